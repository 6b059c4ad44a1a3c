// The torch workloads the benches share, as Python source spliced into their generated scripts (so
// torchOverhead and torchPeers measure the same models).
//   mlp          MLP 784-1536-512-10, about 2.0M parameters in 6 tensors, batch 128
//   cnn          two 3×3 convs (16, 32 channels) on 28×28 and a linear head, 6 tensors, batch 64
//   transformer  a small GPT-like language model: token and position embeddings, 8 pre-norm encoder
//                layers (d_model 128, 4 heads, feed-forward 512), a linear head; 100 tensors, about
//                1.9M parameters, batch 16 × 64 tokens
//   big          an MLP of 6 layers of 4096 (about 100M parameters), batch 16: memory (peak RSS)
export const TORCH_MLP_PY = `class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 1536)
        self.fc2 = nn.Linear(1536, 512)
        self.out = nn.Linear(512, 10)

    def forward(self, x):
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))
`;

export const TORCH_WORKLOADS = ['mlp', 'cnn', 'transformer', 'big'];

/**
 * Python defining `make_workload(kind, n)` → (model, batches(i) → (input, target), loss_fn) for n
 * steps, data generated up front (so data loading is not in the step time). Needs `torch`, `nn`.
 */
export const TORCH_WORKLOADS_PY = `${TORCH_MLP_PY}

class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.fc = nn.Linear(32 * 5 * 5, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


class TinyGPT(nn.Module):
    def __init__(self, vocab=1000, ctx=64, d=128, layers=8):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        block = lambda: nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.ModuleList([block() for _ in range(layers)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        mask = torch.triu(torch.full((ctx, ctx), float("-inf")), diagonal=1)
        self.register_buffer("mask", mask)

    def forward(self, idx):
        t = idx.shape[1]
        h = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for b in self.blocks:
            h = b(h, src_mask=self.mask[:t, :t])
        return self.head(self.norm(h)).flatten(0, 1)


class Big(nn.Module):
    def __init__(self, width=4096, depth=6):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])

    def forward(self, x):
        for i, l in enumerate(self.layers):
            x = l(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def make_workload(kind, n, device="cpu"):
    ce = nn.CrossEntropyLoss()
    if kind == "mlp":
        model, batch = MLP(), 128
        x, y = torch.randn(n * batch, 784), torch.randint(0, 10, (n * batch,))
    elif kind == "cnn":
        model, batch = ConvNet(), 64
        x, y = torch.randn(n * batch, 1, 28, 28), torch.randint(0, 10, (n * batch,))
    elif kind == "transformer":
        model, batch = TinyGPT(), 16
        toks = torch.randint(0, 1000, (n * batch, 65))
        x, y = toks[:, :-1].contiguous(), toks[:, 1:].reshape(n * batch, 64)
    elif kind == "big":
        model, batch = Big(), 16
        x, y = torch.randn(n * batch, 4096), torch.randint(0, 4096, (n * batch,))
    else:
        raise SystemExit("unknown workload %r" % kind)
    model = model.to(device)
    x, y = x.to(device), y.to(device)
    if kind == "transformer":
        batches = lambda i: (x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch].reshape(-1))
    else:
        batches = lambda i: (x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
    return model, batches, ce
`;

/** Sets the scripts' torch threads: GRADSCOPE_BENCH_THREADS, else torch's default (one per core, as a plain run has). Needs `os` and `torch` imported. */
export const TORCH_THREADS_PY = `if os.environ.get("GRADSCOPE_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["GRADSCOPE_BENCH_THREADS"]))`;

/** The torch thread count the bench's scripts run with, as its header prints it (GRADSCOPE_BENCH_THREADS, else torch's default). */
export function threadsNote() {
  const n = process.env.GRADSCOPE_BENCH_THREADS;
  return n ? `${n} torch thread${n === '1' ? '' : 's'} (GRADSCOPE_BENCH_THREADS)` : "torch's default threads (one per core, as a plain run)";
}
