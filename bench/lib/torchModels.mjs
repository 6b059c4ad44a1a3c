// The torch workloads the benches share, as Python source spliced into their generated scripts (so
// torchOverhead and torchPeers measure the same model): an MLP 784-1536-512-10, about 2.0M parameters.
export const TORCH_MLP_PY = `class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 1536)
        self.fc2 = nn.Linear(1536, 512)
        self.out = nn.Linear(512, 10)

    def forward(self, x):
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))
`;
