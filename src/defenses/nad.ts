// NAD (Neural Attention Distillation, Li et al., ICLR 2021): fine-tune a copy of the model on
// the clean data (the teacher), then train the model itself (the student) with cross-entropy
// plus, at chosen stages, the distance between its attention maps and the teacher's. An
// attention map is Σ_c |f_c|^p over a stage's channels, scaled to unit L2 norm over H×W.
// BackdoorBench defense/nad.py and config/defense/nad/cifar10.yaml; the original code (and
// its WRN-16-1, the architecture the MCLDef authors use) for the three-stage default.
import { manualSeed } from '../engine/autograd.js';
import * as F from '../engine/functional.js';
import { SGD } from '../engine/optim/sgd.js';
import { tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';
import type { ImageSplit } from '../data/dataset.js';
import type { Classifier } from '../nn/models/classifier.js';
import { PoisonedBatches } from '../train/poisoned-batches.js';
import {
  type Defense,
  type DefenseContext,
  type DefenseEntry,
  type DefenseEpoch,
  type DefenseOutcome,
  untargetedOutcome,
  endEpoch,
} from './defense.js';
import { type FineTuneSettings, defenseAugmentation, fineTune } from './finetune.js';
import type { OptionSpecs, OptionValues } from './options.js';

export interface NadSettings extends FineTuneSettings {
  /** Epochs of the teacher's fine-tuning (BackdoorBench te_epochs: 10). */
  teacherEpochs: number;
  /** The power p of the attention map (2). */
  power: number;
  /**
   * Weights of the attention terms, for the last stages in order; empty: 500, 1000, 1000 on a
   * three-stage model (WideResNet, the original NAD), else 500, 1000 on the last two
   * (BackdoorBench's PreAct-ResNet18: layer3 and layer4).
   */
  betas: number[];
}

/** BackdoorBench's NAD for CIFAR-10: the student trains as long as the teacher, at a fixed lr. */
export const NAD_DEFAULTS: NadSettings = {
  teacherEpochs: 10,
  epochs: 10,
  batchSize: 256,
  lr: 0.01,
  momentum: 0.9,
  weightDecay: 1e-4,
  power: 2,
  betas: [],
};

/** Σ_c |f_c|^p over the channels of N×C×H×W maps, each map divided by its L2 norm over H×W (+ eps). */
export function attentionMap(maps: Tensor, power = 2, eps = 1e-6): Tensor {
  return tidy(() => {
    const summed = maps.abs().pow(power).sum(1, true);
    const norm = summed.flatten(2).norm(2, 2, true).unsqueeze(3);
    return summed.div(norm.add(eps));
  });
}

/** The mean squared difference of the student's and the teacher's attention maps. */
export function attentionLoss(student: Tensor, teacher: Tensor, power = 2): Tensor {
  return tidy(() => F.mseLoss(attentionMap(student, power), attentionMap(teacher, power)));
}

/** The weights in force for a model with `stages` stages: given ones on the last stages, or the defaults. */
export function stageBetas(stages: number, betas: readonly number[]): number[] {
  const chosen = betas.length > 0 ? [...betas] : stages === 3 ? [500, 1000, 1000] : [500, 1000];
  if (chosen.length > stages) {
    throw new Error(`NAD: ${chosen.length} attention weights for a model with ${stages} stages`);
  }
  return [...new Array<number>(stages - chosen.length).fill(0), ...chosen];
}

function parseBetas(text: string): number[] {
  if (text.trim() === '') return [];
  const betas = text.split(',').map((part) => Number(part.trim()));
  if (betas.some((beta) => !Number.isFinite(beta) || beta < 0)) {
    throw new Error(`NAD --betas '${text}': give non-negative numbers separated by commas, e.g. 500,1000,1000`);
  }
  return betas;
}

const NAD_OPTIONS: OptionSpecs = {
  teacherEpochs: {
    type: 'integer',
    min: 1,
    default: NAD_DEFAULTS.teacherEpochs,
    help: "epochs of the teacher's fine-tuning",
  },
  epochs: { type: 'integer', min: 1, default: NAD_DEFAULTS.epochs, help: "epochs of the student's distillation" },
  batchSize: { type: 'integer', min: 1, default: NAD_DEFAULTS.batchSize, help: 'batch size' },
  lr: { type: 'number', min: 0, default: NAD_DEFAULTS.lr, help: 'SGD learning rate (fixed for the student)' },
  momentum: { type: 'number', min: 0, max: 1, default: NAD_DEFAULTS.momentum, help: 'SGD momentum' },
  weightDecay: { type: 'number', min: 0, default: NAD_DEFAULTS.weightDecay, help: 'SGD weight decay' },
  power: { type: 'number', min: 1, default: NAD_DEFAULTS.power, help: 'the attention map power p' },
  betas: {
    type: 'string',
    help: 'attention weights for the last stages, e.g. 500,1000,1000 (default: 500,1000,1000 on three stages, else 500,1000 on the last two)',
  },
};

function nadSettings(values: OptionValues): NadSettings {
  const read = (name: Exclude<keyof NadSettings, 'betas'>): number =>
    (values[name] as number | undefined) ?? NAD_DEFAULTS[name];
  return {
    teacherEpochs: read('teacherEpochs'),
    epochs: read('epochs'),
    batchSize: read('batchSize'),
    lr: read('lr'),
    momentum: read('momentum'),
    weightDecay: read('weightDecay'),
    power: read('power'),
    betas: parseBetas((values.betas as string | undefined) ?? ''),
  };
}

export class NeuralAttentionDistillation implements Defense {
  readonly name = 'nad';

  constructor(readonly settings: NadSettings = NAD_DEFAULTS) {}

  run(model: Classifier, clean: ImageSplit, context: DefenseContext): DefenseOutcome {
    if (model.forwardStages === undefined || model.copy === undefined) {
      throw new Error(
        `NAD needs the model's stage outputs and a copy of it for the teacher (forwardStages, copy); this architecture has ${model.forwardStages === undefined ? 'no stage outputs' : 'no copy'}`,
      );
    }
    const started = performance.now();
    const settings = this.settings;
    const teacher = model.copy();
    try {
      context.log(`NAD: fine-tuning the teacher for ${settings.teacherEpochs} epochs…`);
      fineTune(
        teacher,
        clean,
        { ...settings, epochs: settings.teacherEpochs },
        { ...context, monitor: undefined },
        'teacher',
        undefined,
        'constant',
      );
      teacher.eval();
      const teacherSeconds = (performance.now() - started) / 1000;
      const epochs = this.distil(model, teacher, clean, context);
      const seconds = (performance.now() - started) / 1000;
      return untargetedOutcome(model, {
        epochs,
        seconds: { teacher: teacherSeconds, distillation: seconds - teacherSeconds },
        details: { settings: { ...settings } },
      });
    } finally {
      teacher.dispose();
    }
  }

  /** The student's epochs: cross-entropy plus the weighted attention terms, SGD at a fixed lr. */
  private distil(model: Classifier, teacher: Classifier, clean: ImageSplit, context: DefenseContext): DefenseEpoch[] {
    const settings = this.settings;
    const batches = new PoisonedBatches(clean, undefined, {
      batchSize: Math.min(settings.batchSize, clean.count),
      seed: context.seed,
      augment: defenseAugmentation(clean, context.dataKind),
    });
    const optimizer = new SGD(model.parameters(), {
      lr: settings.lr,
      momentum: settings.momentum,
      weightDecay: settings.weightDecay,
    });
    const epochs: DefenseEpoch[] = [];
    let betas: number[] | undefined;
    try {
      for (let epoch = 0; epoch < settings.epochs; epoch++) {
        manualSeed(context.seed * 1000 + epoch);
        model.train();
        let lossSum = 0;
        let seen = 0;
        for (const batch of batches.epoch(epoch)) {
          try {
            lossSum += tidy(() => {
              const target = teacher.forwardStages!(batch.images).stages.map((map) => map.detach());
              const student = model.forwardStages!(batch.images);
              betas ??= stageBetas(student.stages.length, settings.betas);
              let loss = F.crossEntropy(student.logits, batch.labels);
              student.stages.forEach((map, i) => {
                if (betas![i]! > 0) loss = loss.add(attentionLoss(map, target[i]!, settings.power).mul(betas![i]!));
              });
              optimizer.zeroGrad();
              loss.backward();
              optimizer.step();
              const value = loss.item();
              if (!Number.isFinite(value)) throw new Error(`NAD: the loss is ${value} at epoch ${epoch} (lower --lr)`);
              return value * batch.size;
            });
            seen += batch.size;
          } finally {
            batch.images.dispose();
            batch.labels.dispose();
          }
        }
        endEpoch(epochs, model, context, {
          stage: 'distillation',
          label: 'distillation epoch',
          index: epoch,
          total: settings.epochs,
          lr: settings.lr,
          loss: lossSum / seen,
          mode: 'train',
        });
      }
    } finally {
      optimizer.dispose();
    }
    model.eval();
    return epochs;
  }
}

export const nadEntry: DefenseEntry = {
  name: 'nad',
  summary: 'Neural Attention Distillation (NAD): a fine-tuned teacher guides the model by its attention maps',
  options: NAD_OPTIONS,
  create: (values) => new NeuralAttentionDistillation(nadSettings(values)),
};
