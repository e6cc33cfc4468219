// Learning-rate schedules (closed forms of torch.optim.lr_scheduler). Call step() once
// per epoch (or per batch for OneCycle); each sets every group's lr.
import type { Optimizer } from './optimizer.js';

type AnyOptimizer = Optimizer<{ lr: number }, unknown>;

export abstract class LRScheduler {
  /** Completed step() calls (the epoch index the current lr belongs to). */
  lastEpoch = 0;
  readonly baseLrs: readonly number[];

  constructor(readonly optimizer: AnyOptimizer) {
    this.baseLrs = optimizer.paramGroups.map((group) => group.lr);
  }

  /** Sets the epoch-0 rates; each subclass calls it once its own fields exist. */
  protected start(): void {
    this.#apply();
  }

  /** The learning rate of group `index` at epoch `epoch`. */
  protected abstract lrAt(epoch: number, baseLr: number, index: number): number;

  step(): void {
    this.lastEpoch += 1;
    this.#apply();
  }

  /** Current learning rates, one per group. */
  get lastLr(): number[] {
    return this.optimizer.paramGroups.map((group) => group.lr);
  }

  #apply(): void {
    this.optimizer.paramGroups.forEach((group, index) => {
      group.lr = this.lrAt(this.lastEpoch, this.baseLrs[index] ?? group.lr, index);
    });
  }
}

/** lr · gamma^⌊epoch / stepSize⌋ */
export class StepLR extends LRScheduler {
  constructor(
    optimizer: AnyOptimizer,
    readonly stepSize: number,
    readonly gamma = 0.1,
  ) {
    super(optimizer);
    this.start();
  }

  protected lrAt(epoch: number, baseLr: number): number {
    return baseLr * this.gamma ** Math.floor(epoch / this.stepSize);
  }
}

/** lr · gamma^(number of milestones ≤ epoch) */
export class MultiStepLR extends LRScheduler {
  constructor(
    optimizer: AnyOptimizer,
    readonly milestones: readonly number[],
    readonly gamma = 0.1,
  ) {
    super(optimizer);
    this.start();
  }

  protected lrAt(epoch: number, baseLr: number): number {
    return baseLr * this.gamma ** this.milestones.filter((milestone) => milestone <= epoch).length;
  }
}

/** η_min + (lr − η_min)(1 + cos(π·epoch/tMax))/2 */
export class CosineAnnealingLR extends LRScheduler {
  constructor(
    optimizer: AnyOptimizer,
    readonly tMax: number,
    readonly etaMin = 0,
  ) {
    super(optimizer);
    this.start();
  }

  protected lrAt(epoch: number, baseLr: number): number {
    return this.etaMin + ((baseLr - this.etaMin) * (1 + Math.cos((Math.PI * epoch) / this.tMax))) / 2;
  }
}

/** lr · factor(epoch), like LambdaLR. */
export class LambdaLR extends LRScheduler {
  constructor(
    optimizer: AnyOptimizer,
    readonly factor: (epoch: number) => number,
  ) {
    super(optimizer);
    this.start();
  }

  protected lrAt(epoch: number, baseLr: number): number {
    return baseLr * this.factor(epoch);
  }
}

/** An absolute lr per epoch from a function (e.g. MCLDef's published step schedule). */
export class FunctionLR extends LRScheduler {
  constructor(
    optimizer: AnyOptimizer,
    readonly lrOf: (epoch: number, groupIndex: number) => number,
  ) {
    super(optimizer);
    this.start();
  }

  protected lrAt(epoch: number, _baseLr: number, index: number): number {
    return this.lrOf(epoch, index);
  }
}

export interface OneCycleOptions {
  maxLr: number;
  totalSteps: number;
  pctStart?: number;
  annealStrategy?: 'cos' | 'linear';
  divFactor?: number;
  finalDivFactor?: number;
  threePhase?: boolean;
}

/** The 1cycle policy, stepped once per batch (torch.optim.lr_scheduler.OneCycleLR, momentum not cycled). */
export class OneCycleLR extends LRScheduler {
  readonly options: Required<OneCycleOptions>;
  /** Phase ends (step index) with the lr at their start and end. */
  readonly #phases: { end: number; from: number; to: number }[];

  constructor(optimizer: AnyOptimizer, options: OneCycleOptions) {
    super(optimizer);
    this.options = {
      pctStart: 0.3,
      annealStrategy: 'cos',
      divFactor: 25,
      finalDivFactor: 1e4,
      threePhase: false,
      ...options,
    };
    const { maxLr, totalSteps, pctStart, divFactor, finalDivFactor, threePhase } = this.options;
    const initial = maxLr / divFactor;
    const min = initial / finalDivFactor;
    const up = pctStart * totalSteps - 1;
    this.#phases = threePhase
      ? [
          { end: up, from: initial, to: maxLr },
          { end: 2 * up, from: maxLr, to: initial },
          { end: totalSteps - 1, from: initial, to: min },
        ]
      : [
          { end: up, from: initial, to: maxLr },
          { end: totalSteps - 1, from: maxLr, to: min },
        ];
    this.start();
  }

  protected lrAt(epoch: number): number {
    if (epoch > this.options.totalSteps) {
      throw new RangeError(`OneCycleLR: stepped ${epoch} times, more than totalSteps = ${this.options.totalSteps}`);
    }
    let start = 0;
    for (const [index, phase] of this.#phases.entries()) {
      if (epoch <= phase.end || index === this.#phases.length - 1) {
        const pct = (epoch - start) / (phase.end - start);
        return this.options.annealStrategy === 'cos'
          ? phase.to + ((phase.from - phase.to) / 2) * (1 + Math.cos(Math.PI * pct))
          : (phase.to - phase.from) * pct + phase.from;
      }
      start = phase.end;
    }
    throw new Error('unreachable');
  }
}
