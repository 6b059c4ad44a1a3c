"""Vanishing gradients: a deep stack of sigmoid layers with small initial weights. Each layer
multiplies the backward signal by sigmoid'(z) <= 0.25 and by small weights, so the first layers'
gradients are orders of magnitude smaller than the last ones' and the early layers barely learn.
"""
# gs:expect vanishing-gradient
import torch
from torch import nn

torch.manual_seed(21)
N = 512
x = torch.rand(N, 16) * 2 - 1
y = ((x[:, :1] * x[:, 1:2]) > 0).float()


class Deep(nn.Module):
    def __init__(self, depth=10, width=32):
        super().__init__()
        self.inp = nn.Linear(16, width)  # gs:layer vanishing-gradient
        self.hidden = nn.ModuleList([nn.Linear(width, width) for _ in range(depth - 1)])
        self.head = nn.Linear(width, 1)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.1)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = torch.sigmoid(self.inp(x))
        for layer in self.hidden:
            x = torch.sigmoid(layer(x))
        return torch.sigmoid(self.head(x))


model = Deep()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = nn.BCELoss()

step = 0
for epoch in range(12):
    for i in range(0, N, 64):
        optimizer.zero_grad()
        loss = loss_fn(model(x[i:i + 64]), y[i:i + 64])
        loss.backward()
        optimizer.step()
        step += 1
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
print("done")
