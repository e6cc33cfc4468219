"""PyTorch side of `npm run bench:engine`: the same WRN-16-1 SGD step, driven over stdin so
that both engines are timed in alternating rounds of one run. Protocol: reads lines
`steps N`, `add N`, `quit`; answers one JSON line per command."""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(sys.argv[1])
torch.set_num_threads(threads)
torch.manual_seed(0)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes
        self.convShortcut = None if self.equal else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        a = F.relu(self.bn1(x), inplace=True)
        shortcut = x if self.equal else self.convShortcut(a)
        out = F.relu(self.bn2(self.conv1(a)), inplace=True)
        return self.conv2(out).add_(shortcut)


class WRN(nn.Module):
    def __init__(self, depth=16, k=1, classes=10):
        super().__init__()
        n = (depth - 4) // 6
        ch = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        blocks = []
        for stage, stride in zip(range(3), [1, 2, 2]):
            blocks += [BasicBlock(ch[stage] if i == 0 else ch[stage + 1], ch[stage + 1], stride if i == 0 else 1) for i in range(n)]
        self.blocks = nn.Sequential(*blocks)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], classes)

    def forward(self, x):
        out = self.blocks(self.conv1(x))
        out = F.adaptive_avg_pool2d(F.relu(self.bn1(out)), 1).flatten(1)
        return self.fc(out)


model = WRN().train()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
x = torch.randn(64, 3, 32, 32)
y = torch.randint(0, 10, (64,))


def step():
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


one = torch.ones(1)
print(json.dumps({"ready": True, "version": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    command, *args = line.split()
    if command == "steps":
        times = []
        for _ in range(int(args[0])):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1000)
        print(json.dumps({"ms": times}), flush=True)
    elif command == "add":
        count = int(args[0])
        start = time.perf_counter()
        for _ in range(count):
            one + one
        print(json.dumps({"us": (time.perf_counter() - start) * 1e6 / count}), flush=True)
    else:
        break
