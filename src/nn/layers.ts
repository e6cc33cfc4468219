// The standard layers, with PyTorch's parameter names, shapes and default initializations.
import { empty, ones, scalar, zeros } from '../engine/creation.js';
import * as F from '../engine/functional.js';
import { noGrad } from '../engine/autograd.js';
import { tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import { defaultLayerInit_ } from './init.js';
import { Module } from './module.js';

type Pair = number | readonly [number, number];

function pair(value: Pair): [number, number] {
  return typeof value === 'number' ? [value, value] : [value[0], value[1]];
}

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
}

export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly options: Required<Omit<Conv2dOptions, 'bias'>>;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: Pair,
    options: Conv2dOptions = {},
  ) {
    super();
    const groups = options.groups ?? 1;
    if (inChannels % groups !== 0 || outChannels % groups !== 0) {
      throw new Error(`Conv2d: channels (${inChannels} in, ${outChannels} out) must be divisible by groups ${groups}`);
    }
    const [kh, kw] = pair(kernelSize);
    this.options = {
      stride: options.stride ?? 1,
      padding: options.padding ?? 0,
      dilation: options.dilation ?? 1,
      groups,
    };
    this.weight = this.registerParameter('weight', empty([outChannels, inChannels / groups, kh, kw]));
    this.bias = this.registerParameter('bias', options.bias === false ? null : empty([outChannels]));
    defaultLayerInit_(this.weight, this.bias);
  }

  override forward(input: Tensor): Tensor {
    return F.conv2d(input, this.weight, this.bias, this.options);
  }
}

export class ConvTranspose2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly options: Required<Omit<Conv2dOptions, 'bias'>> & { outputPadding: Pair };

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: Pair,
    options: Conv2dOptions & { outputPadding?: Pair } = {},
  ) {
    super();
    const groups = options.groups ?? 1;
    const [kh, kw] = pair(kernelSize);
    this.options = {
      stride: options.stride ?? 1,
      padding: options.padding ?? 0,
      dilation: options.dilation ?? 1,
      groups,
      outputPadding: options.outputPadding ?? 0,
    };
    // PyTorch's transposed layout: [in, out / groups, kh, kw].
    this.weight = this.registerParameter('weight', empty([inChannels, outChannels / groups, kh, kw]));
    this.bias = this.registerParameter('bias', options.bias === false ? null : empty([outChannels]));
    defaultLayerInit_(this.weight, this.bias);
  }

  override forward(input: Tensor): Tensor {
    return F.convTranspose2d(input, this.weight, this.bias, this.options);
  }
}

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    options: { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', empty([outFeatures, inFeatures]));
    this.bias = this.registerParameter('bias', options.bias === false ? null : empty([outFeatures]));
    defaultLayerInit_(this.weight, this.bias);
  }

  override forward(input: Tensor): Tensor {
    return F.linear(input, this.weight, this.bias);
  }
}

export interface BatchNormOptions {
  eps?: number;
  /** Running-statistics momentum; null means a cumulative average (PyTorch's momentum=None). */
  momentum?: number | null;
  affine?: boolean;
  trackRunningStats?: boolean;
}

export class BatchNorm2d extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor | null;
  readonly runningVar: Tensor | null;
  readonly numBatchesTracked: Tensor | null;
  readonly eps: number;
  /** Mutable, as in PyTorch: `recalibrateBatchNorm` switches it to a cumulative average. */
  momentum: number | null;

  constructor(
    readonly numFeatures: number,
    options: BatchNormOptions = {},
  ) {
    super();
    this.eps = options.eps ?? 1e-5;
    this.momentum = options.momentum === undefined ? 0.1 : options.momentum;
    const affine = options.affine ?? true;
    const track = options.trackRunningStats ?? true;
    this.weight = this.registerParameter('weight', affine ? ones([numFeatures]) : null);
    this.bias = this.registerParameter('bias', affine ? zeros([numFeatures]) : null);
    this.runningMean = this.registerBuffer('running_mean', track ? zeros([numFeatures]) : null);
    this.runningVar = this.registerBuffer('running_var', track ? ones([numFeatures]) : null);
    this.numBatchesTracked = this.registerBuffer('num_batches_tracked', track ? scalar(0, { dtype: 'int64' }) : null);
  }

  override forward(input: Tensor): Tensor {
    if (input.ndim !== 4) {
      throw new Error(`BatchNorm2d: expected a 4-d input (N×C×H×W), got [${input.shape.join(', ')}]`);
    }
    let momentum = this.momentum ?? 0;
    if (this.training && this.numBatchesTracked !== null) {
      noGrad(() => this.numBatchesTracked?.add_(1));
      if (this.momentum === null) momentum = 1 / this.numBatchesTracked.item();
    }
    // Without running statistics, batch statistics are used in eval mode too.
    return F.batchNorm(input, this.runningMean, this.runningVar, {
      weight: this.weight,
      bias: this.bias,
      training: this.training || this.runningMean === null,
      momentum,
      eps: this.eps,
    });
  }
}

export class ReLU extends Module {
  override forward(input: Tensor): Tensor {
    return input.relu();
  }
}

export class LeakyReLU extends Module {
  constructor(readonly negativeSlope = 0.01) {
    super();
  }

  override forward(input: Tensor): Tensor {
    return input.leakyRelu(this.negativeSlope);
  }
}

export class Sigmoid extends Module {
  override forward(input: Tensor): Tensor {
    return input.sigmoid();
  }
}

export class Tanh extends Module {
  override forward(input: Tensor): Tensor {
    return input.tanh();
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (p < 0 || p > 1) throw new RangeError(`Dropout: p must be in [0, 1], got ${p}`);
  }

  override forward(input: Tensor): Tensor {
    return F.dropout(input, this.p, this.training);
  }
}

export class MaxPool2d extends Module {
  constructor(
    readonly kernelSize: Pair,
    readonly options: F.PoolOptions & { dilation?: Pair } = {},
  ) {
    super();
  }

  override forward(input: Tensor): Tensor {
    return F.maxPool2d(input, this.kernelSize, this.options);
  }
}

export class AvgPool2d extends Module {
  constructor(
    readonly kernelSize: Pair,
    readonly options: F.PoolOptions & { countIncludePad?: boolean } = {},
  ) {
    super();
  }

  override forward(input: Tensor): Tensor {
    return F.avgPool2d(input, this.kernelSize, this.options);
  }
}

export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: Pair) {
    super();
  }

  override forward(input: Tensor): Tensor {
    return F.adaptiveAvgPool2d(input, this.outputSize);
  }
}

export class Flatten extends Module {
  constructor(
    readonly startDim = 1,
    readonly endDim = -1,
  ) {
    super();
  }

  override forward(input: Tensor): Tensor {
    return input.flatten(this.startDim, this.endDim);
  }
}

export class Identity extends Module {
  override forward(input: Tensor): Tensor {
    return input;
  }
}

/** Modules indexed 0, 1, 2, ... (the names PyTorch gives them). */
export class ModuleList<M extends Module = Module> extends Module implements Iterable<M> {
  readonly #items: M[] = [];

  constructor(modules: Iterable<M> = []) {
    super();
    for (const module of modules) this.append(module);
  }

  append(module: M): this {
    this.registerModule(String(this.#items.length), module);
    this.#items.push(module);
    return this;
  }

  get length(): number {
    return this.#items.length;
  }

  at(index: number): M {
    const module = this.#items.at(index);
    if (module === undefined) throw new RangeError(`${this.constructor.name}: no module at index ${index}`);
    return module;
  }

  [Symbol.iterator](): Iterator<M> {
    return this.#items[Symbol.iterator]();
  }
}

/**
 * Applies its modules in order. Intermediate results are freed as it goes, so a
 * forward pass outside `tidy` leaks nothing but what autograd still holds.
 */
export class Sequential extends ModuleList {
  constructor(...modules: Module[]) {
    super(modules);
  }

  override forward(input: Tensor): Tensor {
    let current = input;
    for (const module of this) {
      const next = module.forward(current);
      if (current !== input && next !== current) current.dispose();
      current = next;
    }
    return current;
  }
}

/**
 * Re-estimates every BatchNorm2d's running statistics from `batches` (already normalized
 * model inputs, each disposed here once used): the statistics are reset, then averaged over
 * all batches with equal weight (PyTorch's momentum=None), without gradients and without
 * changing any parameter.
 */
export function recalibrateBatchNorm(model: Module, batches: Iterable<Tensor>): void {
  const tracked = [...model.namedModules()]
    .map(([, m]) => m)
    .filter((m): m is BatchNorm2d => m instanceof BatchNorm2d && m.runningMean !== null);
  if (tracked.length === 0) return;
  const wasTraining = model.training;
  const momenta = tracked.map((m) => m.momentum);
  noGrad(() => {
    for (const m of tracked) {
      m.runningMean!.zero_();
      m.runningVar!.fill_(1);
      m.numBatchesTracked!.zero_();
      m.momentum = null;
    }
  });
  model.train();
  try {
    noGrad(() => {
      for (const batch of batches) {
        tidy(() => model.forward(batch));
        batch.dispose();
      }
    });
  } finally {
    tracked.forEach((m, i) => (m.momentum = momenta[i]!));
    model.train(wasTraining);
  }
}
