// A toy separable image problem and a small CNN, shared by the training and leak tests.
import { F, type Tensor, manualSeed, nn, randint, randn, tidy, zeros } from '../../src/index.js';

/** N images 1×8×8: noise plus a bright 3×3 patch in the quadrant given by the label (4 classes). */
export function quadrantData(count: number, seed: number): { images: Tensor; labels: Tensor } {
  manualSeed(seed);
  return tidy(() => {
    const labels = randint(0, 4, [count]);
    const images = randn([count, 1, 8, 8]).mul(0.5);
    const patches = zeros([4, 1, 8, 8]);
    const corners = [
      [0, 0],
      [0, 5],
      [5, 0],
      [5, 5],
    ] as const;
    corners.forEach(([row, column], label) => {
      patches.select(0, label).narrow(1, row, 3).narrow(2, column, 3).fill_(1);
    });
    return { images: images.add(patches.indexSelect(0, labels)), labels };
  });
}

export class SmallCNN extends nn.Module {
  readonly body = this.registerModule(
    'body',
    new nn.Sequential(
      new nn.Conv2d(1, 8, 3, { padding: 1 }),
      new nn.BatchNorm2d(8),
      new nn.ReLU(),
      new nn.MaxPool2d(2),
      new nn.Conv2d(8, 16, 3, { padding: 1 }),
      new nn.ReLU(),
      new nn.AdaptiveAvgPool2d(1),
      new nn.Flatten(),
    ),
  );
  readonly head = this.registerModule('head', new nn.Linear(16, 4));

  override forward(x: Tensor): Tensor {
    return tidy(() => this.head.forward(this.body.forward(x)));
  }
}

export function accuracy(logits: Tensor, labels: Tensor): number {
  return tidy(() => logits.argmax(1).eq(labels).float().mean().item());
}

export function crossEntropy(logits: Tensor, labels: Tensor): Tensor {
  return F.crossEntropy(logits, labels);
}
