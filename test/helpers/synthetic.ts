// A small synthetic RGB image split (classes by colour quadrant) and a small classifier,
// for training, attack and defense tests that must run in seconds.
import { type Tensor, manualSeed, nn, randint, randn, tidy, zeros } from '../../src/index.js';
import { ImageSplit } from '../../src/data/dataset.js';
import { type Classifier, type ConvBatchNormPair, sequentialPairs } from '../../src/nn/models/classifier.js';
import type { TrainConfig } from '../../src/train/trainer.js';

/** N images 3×size×size: background noise and a bright quadrant chosen by the label (4 classes). */
export function quadrantSplit(count: number, seed: number, size = 12): ImageSplit {
  manualSeed(seed);
  const pixels = tidy(() => {
    const labels = randint(0, 4, [count]);
    const half = size / 2;
    const base = randn([count, 3, size, size]).mul(0.12).add(0.35);
    const patches = zeros([4, 3, size, size]);
    [
      [0, 0],
      [0, half],
      [half, 0],
      [half, half],
    ].forEach(([row, column], label) =>
      patches.select(0, label).narrow(1, row!, half).narrow(2, column!, half).fill_(0.3),
    );
    const images = base.add(patches.indexSelect(0, labels)).clamp(0, 1).mul(255).round().to('uint8');
    return { images: images.toTypedArray() as Uint8Array, labels: labels.to('int32').toTypedArray() as Int32Array };
  });
  return new ImageSplit({
    pixels: pixels.images,
    labels: pixels.labels,
    channels: 3,
    height: size,
    width: size,
    classNames: ['a', 'b', 'c', 'd'],
    normalization: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] },
    source: `synthetic quadrants (seed ${seed})`,
  });
}

/** conv-bn-relu ×2, global pooling, linear: a Classifier small enough for tests. */
export class TinyNet extends nn.Module implements Classifier {
  readonly numClasses: number;
  readonly body: nn.Sequential;
  readonly fc: nn.Linear;

  constructor(numClasses = 4, channels = 3) {
    super();
    this.numClasses = numClasses;
    this.body = this.registerModule(
      'body',
      new nn.Sequential(
        new nn.Conv2d(channels, 16, 3, { padding: 1 }),
        new nn.BatchNorm2d(16),
        new nn.ReLU(),
        new nn.Conv2d(16, 32, 3, { padding: 1, stride: 2 }),
        new nn.BatchNorm2d(32),
        new nn.ReLU(),
        new nn.AdaptiveAvgPool2d(1),
        new nn.Flatten(),
      ),
    );
    this.fc = this.registerModule('fc', new nn.Linear(32, numClasses));
  }

  features(input: Tensor): Tensor {
    return this.body.forward(input);
  }

  classify(features: Tensor): Tensor {
    return this.fc.forward(features);
  }

  override forward(input: Tensor): Tensor {
    return tidy(() => this.classify(this.features(input)));
  }

  convBatchNormPairs(): ConvBatchNormPair[] {
    return sequentialPairs(this);
  }

  /** The two conv-bn-relu stages' maps, and the logits. */
  forwardStages(input: Tensor): { logits: Tensor; stages: Tensor[] } {
    return tidy(() => {
      const stages: Tensor[] = [];
      let out = input;
      [...this.body].forEach((layer, i) => {
        out = layer.forward(out);
        if (i === 2 || i === 5) stages.push(out);
      });
      return { logits: this.fc.forward(out), stages };
    });
  }

  copy(): TinyNet {
    const twin = new TinyNet(this.numClasses, (this.body.at(0) as nn.Conv2d).weight.shape[1]);
    const state = this.stateDict();
    twin.loadStateDict(state);
    for (const tensor of state.values()) tensor.dispose();
    return twin;
  }
}

/** Six short SGD epochs with light augmentation: enough for TinyNet on quadrantSplit. */
export const SMALL_TRAINING: TrainConfig = {
  epochs: 6,
  batchSize: 32,
  optimizer: 'sgd',
  lr: 0.05,
  momentum: 0.9,
  weightDecay: 5e-4,
  schedule: 'cosine',
  seed: 1,
  augment: { horizontalFlip: false, cropPadding: 1 },
};
