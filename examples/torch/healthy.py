"""A healthy run: a small MLP with torch's default initialisation, Adam at a sensible learning
rate, standardised inputs. The loss falls and nothing should be flagged.
"""
# gs:expect
import torch
from torch import nn

torch.manual_seed(0)
N = 512
x = torch.randn(N, 10)
y = torch.tanh(x @ torch.randn(10, 1))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 64)
        self.fc2 = nn.Linear(64, 64)
        self.fc3 = nn.Linear(64, 1)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


model = MLP()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

step = 0
for epoch in range(10):
    for i in range(0, N, 64):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x[i:i + 64]), y[i:i + 64])
        loss.backward()
        optimizer.step()
        step += 1
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
print("done")
