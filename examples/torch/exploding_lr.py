"""Exploding gradients from a learning rate far too high: a well-initialised MLP (torch's default
init) on standardised inputs, trained with SGD at lr=0.9. The very first updates move the weights
by more than their own size; the loss and the gradient norm then grow step after step.
"""
# gs:expect exploding-gradient non-finite-gradient
# gs:global exploding-gradient
import torch
from torch import nn

torch.manual_seed(11)
N = 512
x = torch.randn(N, 16)
y = x @ torch.randn(16, 1) * 3.0 + 1.0

model = nn.Sequential(
    nn.Linear(16, 64),
    nn.ReLU(),
    nn.Linear(64, 64),
    nn.ReLU(),
    nn.Linear(64, 1),
)
optimizer = torch.optim.SGD(model.parameters(), lr=0.9)  # far too high

step = 0
for epoch in range(12):
    for i in range(0, N, 64):
        optimizer.zero_grad()
        loss = ((model(x[i:i + 64]) - y[i:i + 64]) ** 2).mean()
        loss.backward()
        optimizer.step()
        if step % 8 == 0:
            print(f"step {step}: loss {loss.item():.4g}")
        step += 1
print("done")
