// FT: fine-tuning every layer on the defender's clean data with cross-entropy. The simplest
// baseline: it relies on the clean data overwriting what the backdoor needs.
import type { ImageSplit } from '../data/dataset.js';
import type { Classifier } from '../nn/models/classifier.js';
import {
  type Defense,
  type DefenseContext,
  type DefenseEntry,
  type DefenseOutcome,
  untargetedOutcome,
} from './defense.js';
import {
  BACKDOORBENCH_FINE_TUNING,
  type FineTuneSettings,
  fineTune,
  fineTuneOptions,
  fineTuneSettings,
} from './finetune.js';

export class FineTuning implements Defense {
  readonly name = 'ft';

  constructor(readonly settings: FineTuneSettings = BACKDOORBENCH_FINE_TUNING) {}

  run(model: Classifier, clean: ImageSplit, context: DefenseContext): DefenseOutcome {
    const started = performance.now();
    context.log(`fine-tuning every layer for ${this.settings.epochs} epochs on ${clean.count} clean images…`);
    const epochs = fineTune(model, clean, this.settings, context);
    const seconds = (performance.now() - started) / 1000;
    return untargetedOutcome(model, {
      epochs,
      seconds: { fine_tuning: seconds },
      details: { settings: { ...this.settings } },
    });
  }
}

export const ftEntry: DefenseEntry = {
  name: 'ft',
  summary: 'fine-tuning (FT): every layer trained on the clean data with cross-entropy',
  options: fineTuneOptions(BACKDOORBENCH_FINE_TUNING),
  create: (values) => new FineTuning(fineTuneSettings(values, BACKDOORBENCH_FINE_TUNING)),
};
