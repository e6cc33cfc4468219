// The model zoo: `--arch` names to constructors, and the classes themselves.
import type { Classifier } from './classifier.js';
import { SmallCNN } from './cnn-small.js';
import { PreActResNet } from './preact-resnet.js';
import { ResNet } from './resnet.js';
import { VGG, vggConfigs } from './vgg.js';
import { WideResNet } from './wrn.js';

export type { Classifier } from './classifier.js';
export { SmallCNN, type SmallCNNOptions } from './cnn-small.js';
export { PreActBlock, PreActResNet, preActResNet18, type PreActResNetOptions } from './preact-resnet.js';
export { BasicBlock, ResNet, resNet18, type ResNetOptions } from './resnet.js';
export { VGG, vgg16BN, vggConfigs, type VGGOptions } from './vgg.js';
export { WideResNet, type WideResNetOptions } from './wrn.js';

export interface ModelOptions {
  numClasses: number;
  /** Input channels; the architecture's default (3, or 1 for cnn-small) when absent. */
  inChannels?: number;
}

export interface ArchInfo {
  readonly name: string;
  readonly description: string;
  /** Default input channels. */
  readonly inChannels: number;
  /** The input height and width the architecture is meant for. */
  readonly inputSize: readonly [number, number];
  /** Whether other input sizes work (global pooling before the head). */
  readonly anyInputSize: boolean;
  /** Penultimate feature width. */
  readonly featureDim: number;
  readonly create: (options: Required<ModelOptions>) => Classifier;
}

const wrn = (depth: number, widenFactor: number): ArchInfo => ({
  name: `wrn-${depth}-${widenFactor}`,
  description: `Wide ResNet ${depth}-${widenFactor} (the MCLDef/NAD authors' code and names)`,
  inChannels: 3,
  inputSize: [32, 32],
  anyInputSize: true,
  featureDim: 64 * widenFactor,
  create: ({ numClasses, inChannels }) => new WideResNet({ depth, widenFactor, numClasses, inChannels }),
});

const archs: readonly ArchInfo[] = [
  wrn(16, 1),
  wrn(16, 2),
  wrn(40, 1),
  wrn(40, 2),
  {
    name: 'preact-resnet18',
    description: "PreAct-ResNet18 (BackdoorBench's models/preact_resnet.py and names)",
    inChannels: 3,
    inputSize: [32, 32],
    anyInputSize: true,
    featureDim: 512,
    create: ({ numClasses, inChannels }) => new PreActResNet({ numClasses, inChannels, numBlocks: [2, 2, 2, 2] }),
  },
  {
    name: 'resnet18',
    description: "ResNet-18 with the CIFAR stem (kuangliu pytorch-cifar's names)",
    inChannels: 3,
    inputSize: [32, 32],
    anyInputSize: true,
    featureDim: 512,
    create: ({ numClasses, inChannels }) => new ResNet({ numClasses, inChannels, numBlocks: [2, 2, 2, 2] }),
  },
  {
    name: 'vgg16-bn',
    description: 'VGG-16 with batch norm for 32×32 inputs (kuangliu/BackdoorBench CIFAR VGG names)',
    inChannels: 3,
    inputSize: [32, 32],
    anyInputSize: false,
    featureDim: 512,
    create: ({ numClasses, inChannels }) => new VGG({ numClasses, inChannels, config: vggConfigs.vgg16 }),
  },
  {
    name: 'cnn-small',
    description: 'small CNN for 28×28 grey images (MNIST, Fashion-MNIST)',
    inChannels: 1,
    inputSize: [28, 28],
    anyInputSize: false,
    featureDim: 128,
    create: ({ numClasses, inChannels }) => new SmallCNN({ numClasses, inChannels }),
  },
];

const byName = new Map(archs.map((arch) => [arch.name, arch]));

/** The `--arch` names, in a stable order. */
export function modelNames(): string[] {
  return archs.map((arch) => arch.name);
}

/** What an architecture expects; throws for an unknown name. */
export function archInfo(arch: string): ArchInfo {
  const info = byName.get(arch);
  if (info === undefined) {
    throw new Error(`unknown architecture '${arch}'; known architectures: ${modelNames().join(', ')}`);
  }
  return info;
}

/** A freshly initialized model of the named architecture. */
export function createModel(arch: string, options: ModelOptions): Classifier {
  const info = archInfo(arch);
  const { numClasses } = options;
  if (!Number.isInteger(numClasses) || numClasses < 2) {
    throw new Error(`${arch}: the number of classes must be an integer ≥ 2, got ${numClasses}`);
  }
  const inChannels = options.inChannels ?? info.inChannels;
  if (!Number.isInteger(inChannels) || inChannels < 1) {
    throw new Error(`${arch}: the number of input channels must be a positive integer, got ${inChannels}`);
  }
  const model = info.create({ numClasses, inChannels });
  // A copy: the same architecture, the same weights and buffers, on the same device.
  model.copy = () => {
    const twin = createModel(arch, { numClasses, inChannels });
    const state = model.stateDict();
    try {
      const device = [...state.values()][0]?.device;
      if (device !== undefined && device !== 'cpu') twin.to(device);
      twin.loadStateDict(state);
    } finally {
      for (const tensor of state.values()) tensor.dispose();
    }
    twin.train(model.training);
    return twin;
  };
  return model;
}

export {
  fittingArchs,
  loadClassifier,
  recordedArch,
  type ArchSource,
  type LoadClassifierOptions,
  type LoadedClassifier,
} from './load.js';
