"""Dead units: the second hidden layer's bias starts far negative, so its ReLUs never fire. That
layer's weight and bias get exactly zero gradient from the first step on (and so does everything
below it: no gradient gets through).
"""
# gs:expect dead-units
import torch
from torch import nn

torch.manual_seed(201)
x = torch.randn(256, 8)
y = x[:, :1].abs()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden1 = nn.Linear(8, 32)
        self.hidden2 = nn.Linear(32, 32)  # gs:layer dead-units
        self.out = nn.Linear(32, 1)
        nn.init.constant_(self.hidden2.bias, -20.0)  # every unit of hidden2 starts dead

    def forward(self, x):
        x = torch.relu(self.hidden1(x))
        x = torch.relu(self.hidden2(x))
        return self.out(x)


model = Net()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

step = 0
for epoch in range(12):
    for i in range(0, 256, 32):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32])
        loss.backward()
        optimizer.step()
        step += 1
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
print("done")
