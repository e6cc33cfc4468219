// The defenses: the interface, the registry, and the built-in methods (one line each).
import { anpEntry } from './anp.js';
import { clpEntry } from './clp.js';
import { fpEntry } from './fp.js';
import { ibauEntry } from './ibau.js';
import { ftEntry } from './ft.js';
import { mcldefEntry } from './mcldef/defense.js';
import { nadEntry } from './nad.js';
import { ncEntry } from './nc.js';
import { sauEntry } from './sau.js';
import { registerDefense } from './registry.js';

export * from './defense.js';
export * from './options.js';
export * from './registry.js';
export { defend, type DefendArgs, type DefendReport, type DefendResult, type ReportMetrics } from './pipeline.js';
export { Mcldef, mcldefEntry } from './mcldef/defense.js';
export { type McldefOptions, MCLDEF_OPTIONS } from './mcldef/options.js';
export { FineTuning, ftEntry } from './ft.js';
export { FinePruning, fpEntry } from './fp.js';
export { ChannelLipschitzPruning, clpEntry } from './clp.js';
export { NeuralAttentionDistillation, nadEntry } from './nad.js';
export { NeuralCleanse, ncEntry } from './nc.js';
export { AdversarialNeuronPruning, anpEntry } from './anp.js';
export { ImplicitBackdoorUnlearning, ibauEntry } from './ibau.js';
export { SharedAdversarialUnlearning, sauEntry } from './sau.js';

registerDefense(mcldefEntry);
registerDefense(ftEntry);
registerDefense(fpEntry);
registerDefense(nadEntry);
registerDefense(ncEntry);
registerDefense(anpEntry);
registerDefense(ibauEntry);
registerDefense(sauEntry);
registerDefense(clpEntry);
