"""WRN-d-k in plain PyTorch with the authors' parameter names (conv1, block{1,2,3}.layer.{i}.
{bn1,conv1,bn2,conv2,convShortcut}, bn1, fc), for the benchmarks that compare with PyTorch."""
import torch.nn as nn
import torch.nn.functional as F


class PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.same = cin == cout
        self.convShortcut = None if self.same else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        return out + (x if self.same else self.convShortcut(activated))


class Stage(nn.Module):
    def __init__(self, count, cin, cout, stride):
        super().__init__()
        self.layer = nn.Sequential(*[PreActBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(count)])

    def forward(self, x):
        return self.layer(x)


class WRN(nn.Module):
    """WRN-d-k with the authors' parameter names."""

    def __init__(self, depth=16, widen=1, classes=10):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.block1 = Stage(n, widths[0], widths[1], 1)
        self.block2 = Stage(n, widths[1], widths[2], 2)
        self.block3 = Stage(n, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], classes)

    def features(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.adaptive_avg_pool2d(F.relu(self.bn1(out)), 1).flatten(1)

    def forward(self, x):
        return self.fc(self.features(x))
