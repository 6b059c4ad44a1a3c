"""NaN from the loss, not from growth: a hand-written binary cross-entropy without an epsilon on
separable data. Training works and the gradient norm falls, until the sigmoid saturates to exactly
1 (or 0) in float32: log(0) = -inf, and the backward pass gives NaN everywhere at once.
"""
# gs:expect non-finite-gradient
import torch
from torch import nn

torch.manual_seed(151)
x = torch.randn(256, 6)
y = (x[:, :1] > 0).float()

model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
optimizer = torch.optim.Adam(model.parameters(), lr=0.1)


def bce(p, t):
    return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()  # gs:global non-finite-gradient


step = 0
for epoch in range(25):
    for i in range(0, 256, 64):
        optimizer.zero_grad()
        loss = bce(model(x[i:i + 64]), y[i:i + 64])
        loss.backward()
        optimizer.step()
        step += 1
    if epoch % 5 == 0:
        print(f"epoch {epoch}: loss {loss.item():.4g}")
print("done")
