"""Exploding gradients from a bad initialisation: an MLP whose weights are drawn with std 0.4,
where He initialisation for 64 inputs would use sqrt(2 / 64) = 0.18. Each layer
amplifies its input, every SGD update overshoots, and the gradient norm grows by orders of
magnitude within a few steps until it overflows to Inf/NaN.
"""
# gs:expect exploding-gradient non-finite-gradient
import torch
from torch import nn

torch.manual_seed(3)
N = 512
x = torch.rand(N, 64) * 2 - 1
y = torch.sin(x @ torch.randn(64, 1) / 4)  # a smooth regression target


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 64)  # gs:layer exploding-gradient
        self.fc2 = nn.Linear(64, 64)
        self.fc3 = nn.Linear(64, 64)
        self.out = nn.Linear(64, 1)
        for m in (self.fc1, self.fc2, self.fc3, self.out):
            nn.init.normal_(m.weight, mean=0.0, std=0.4)  # too large

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        x = torch.relu(self.fc3(x))
        return self.out(x)


model = MLP()
optimizer = torch.optim.SGD(model.parameters(), lr=0.007)
loss_fn = nn.MSELoss()

step = 0
for epoch in range(10):
    for i in range(0, N, 64):
        optimizer.zero_grad()
        loss = loss_fn(model(x[i:i + 64]), y[i:i + 64])
        loss.backward()
        optimizer.step()
        if step % 8 == 0:
            print(f"step {step}: loss {loss.item():.4g}")
        step += 1
print("done")
