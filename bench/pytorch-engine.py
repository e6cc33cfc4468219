"""PyTorch side of `npm run bench:engine`: the same WRN-16-1 SGD step, driven over stdin so
that both engines are timed in alternating rounds of one run. Protocol: reads lines
`steps N`, `add N`, `quit`; answers one JSON line per command."""
import json
import sys
import time

import torch
import torch.nn.functional as F

from pytorch_wrn import WRN

threads = int(sys.argv[1])
torch.set_num_threads(threads)
torch.manual_seed(0)


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
