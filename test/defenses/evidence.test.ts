// The evidence for a defender who does not know the attack (src/defenses/evidence.ts): the
// held-out images never reach the defense, the found trigger is read on the weights before
// and after as computed here independently, the re-scan's summary, and the verdict lines of
// scripted results.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { liveTensorCount, manualSeed, noGrad, setNumThreads, tidy } from '../../src/index.js';
import type { ImageSplit } from '../../src/data/dataset.js';
import { evaluate } from '../../src/eval/metrics.js';
import { type DefenseEntry, registerDefense, unregisterDefense } from '../../src/defenses/index.js';
import { defend } from '../../src/defenses/pipeline.js';
import {
  type ScanSummary,
  type VerdictInput,
  splitEvidence,
  summarizeScan,
  verdictLines,
} from '../../src/defenses/evidence.js';
import type { DetectionResult } from '../../src/defenses/mcldef/detect.js';
import { reportHtml } from '../../src/report/html.js';
import { scans } from '../helpers/scans.js';
import { TinyNet, quadrantSplit } from '../helpers/synthetic.js';

/** Each image's bytes as a string: the identity of an image across selections. */
function imageKeys(split: ImageSplit): string[] {
  const bytes = split.images.toTypedArray() as Uint8Array;
  const size = bytes.length / split.count;
  return Array.from({ length: split.count }, (_, i) =>
    Buffer.from(bytes.subarray(i * size, (i + 1) * size)).toString('base64'),
  );
}

/** Stamps a bright 3×3 square in the top-left corner. */
const corner = {
  method: 'pattern',
  apply: (images: import('../../src/index.js').Tensor) =>
    tidy(() => {
      const out = images.clone();
      out.narrow(2, 0, 3).narrow(3, 0, 3).fill_(1);
      return out;
    }),
  disposed: 0,
  dispose(): void {
    this.disposed++;
  },
};

test('splitEvidence: a stratified, seeded part, disjoint from the rest, together the whole', () => {
  const clean = quadrantSplit(200, 3);
  const a = splitEvidence(clean, 0.1, 7);
  const b = splitEvidence(clean, 0.1, 7);
  try {
    assert.deepEqual(Array.from(a.evidenceIndices), Array.from(b.evidenceIndices), 'seeded');
    const evidence = new Set(a.evidenceIndices);
    assert.ok(
      a.restIndices.every((i) => !evidence.has(i)),
      'disjoint',
    );
    assert.equal(a.evidenceIndices.length + a.restIndices.length, clean.count);
    // Stratified: each class keeps round(10 %) of its images.
    for (let c = 0; c < clean.numClasses; c++) {
      const members = clean.labelArray.filter((label) => label === c).length;
      const held = a.evidence.labelArray.filter((label) => label === c).length;
      assert.equal(held, Math.round(0.1 * members), `class ${c}`);
    }
    const keys = new Set(imageKeys(a.evidence));
    assert.equal(keys.size, a.evidence.count, 'the synthetic images are distinct');
    assert.ok(imageKeys(a.rest).every((key) => !keys.has(key)));
    assert.throws(() => splitEvidence(clean, 0, 7), /evidence fraction must be in \(0, 1\)/);
    assert.throws(() => splitEvidence(quadrantSplit(4, 1), 0.1, 7), /leaves no evidence images/);
  } finally {
    for (const part of [a, b]) {
      part.evidence.dispose();
      part.rest.dispose();
    }
    clean.dispose();
  }
});

test('defend(): the defense never receives an evidence image; the trigger it returns is read before and after', async () => {
  setNumThreads(1);
  manualSeed(11);
  const clean = quadrantSplit(160, 4);
  const model = new TinyNet();
  const original = new TinyNet();
  noGrad(() => original.loadStateDict(model.stateDict()));
  const received: string[] = [];
  // Records the images it gets, then breaks the model in place: every image to class 1.
  const scripted: DefenseEntry = {
    name: 'test-evidence',
    summary: 'records its data and sends everything to class 1',
    options: {},
    create: () => ({
      name: 'test-evidence',
      run: (m, data) => {
        received.push(...imageKeys(data));
        noGrad(() =>
          tidy(() => {
            const fc = (m as TinyNet).fc;
            fc.weight.zero_();
            fc.bias!.zero_();
            fc.bias!.narrow(0, 1, 1).fill_(10);
          }),
        );
        return {
          model: m,
          trigger: corner,
          report: {
            target: 0,
            detected_target: 0,
            changed: true,
            epochs: [],
            seconds: { total: 0 },
            details: {},
          },
        };
      },
    }),
  };
  registerDefense(scripted);
  const live = liveTensorCount();
  try {
    const { report } = await defend({ model, clean, method: 'test-evidence', seed: 5, monitor: 0 });
    const { evidence: held, rest } = splitEvidence(clean, 0.1, 5);
    try {
      const heldKeys = new Set(imageKeys(held));
      assert.equal(received.length, rest.count);
      assert.ok(
        received.every((key) => !heldKeys.has(key)),
        'no evidence image reached the defense',
      );
      const evidence = report.evidence!;
      assert.equal(evidence.images, held.count);
      assert.equal(evidence.trigger, 'pattern');
      const notTarget = held.labelArray.filter((label) => label !== 0).length;
      assert.equal(evidence.stamped_images, notTarget);
      // Before: the original weights, read here with the same trigger.
      const expected = evaluate(original, held, {
        normalization: held.normalization,
        trigger: { apply: corner.apply, targetOf: () => 0, mode: 'all-to-one' },
      });
      assert.deepEqual(evidence.before, {
        trigger_success: expected.asr,
        target_without_trigger: expected.asr_no_trigger,
        clean_accuracy: expected.ba,
      });
      // After: everything goes to class 1.
      const ones = held.labelArray.filter((label) => label === 1).length;
      assert.deepEqual(evidence.after, {
        trigger_success: 0,
        target_without_trigger: 0,
        clean_accuracy: (100 * ones) / held.count,
      });
      assert.ok(corner.disposed >= 1, 'the pipeline disposed the trigger');
      assert.match(report.verdict[0]!, /^backdoor found towards class 0$/, 'no scan, no index');
      assert.match(report.verdict[1]!, /sends 0\.0 % of held-out images to class 0 \(was [\d.]+ %/);
      // The model the caller gets is the defended one (the swap for "before" was undone).
      assert.equal(evaluate(model, held, { normalization: held.normalization }).ba, (100 * ones) / held.count);
    } finally {
      held.dispose();
      rest.dispose();
    }
    // --evidence 0: the defense gets all the clean data and the report says there is no evidence.
    received.length = 0;
    const none = await defend({ model, clean, method: 'test-evidence', seed: 5, monitor: 0, evidence: 0 });
    assert.equal(received.length, clean.count);
    assert.equal(none.report.evidence, null);
    assert.ok(none.report.verdict.includes('no held-out evidence (--evidence 0)'));
    // --verify with a defense that runs no scan: MCLDef's scan before the defense and after it.
    const verified = await defend({ model, clean, method: 'test-evidence', seed: 5, monitor: 0, verify: true });
    const verification = verified.report.verification!;
    assert.equal(verification.before.indices.size!.length, 4);
    assert.equal(verification.after!.indices.size!.length, 4);
    assert.equal(verification.statistic, verification.before.flagged_by ?? 'size');
    assert.ok(verification.seconds > 0 && verification.seconds <= verified.report.seconds.total!);
    assert.match(verified.report.verdict.at(-1)!, /^re-scan: (no class stands out|class \d (still|now) stands out)/);
    assert.equal(liveTensorCount(), live, 'no tensor left behind');
  } finally {
    unregisterDefense('test-evidence');
    model.dispose();
    original.dispose();
    clean.dispose();
  }
});

/** A detection result of sizes and no universal scans, as detectBackdoor reports it. */
function scanOf(sizes: number[], indices: number[], target: number | null): DetectionResult {
  return {
    classes: scans(sizes).map((c, label) => ({
      ...c,
      anomalyIndex: indices[label]!,
      sizeFraction: 1,
      separationRatio: null,
      warpIndex: null,
      signalIndex: null,
    })),
    median: 0,
    mad: 0,
    target,
    flaggedBy: target === null ? null : 'size',
    margin: 1,
    vetoed: [],
    decidedBy: 'scripted.',
    seconds: 12,
    targetPatterns: [],
  };
}

test('summarizeScan: a class above the median is no target (index 0), the others keep theirs', () => {
  const summary = summarizeScan(scanOf([5, 100, 110, 120, 300], [4.1, 0.2, 0, 0.2, 3.9], 0));
  assert.deepEqual(summary.indices.size, [4.1, 0.2, 0, 0, 0]);
  assert.equal(summary.indices.warp, null);
  assert.equal(summary.indices.signal, null);
  assert.equal(summary.target, 0);
  assert.equal(summary.flagged_by, 'size');
});

const scan = (target: number | null, indices: number[], seconds = 150): ScanSummary => ({
  target,
  flagged_by: target === null ? null : 'size',
  indices: { size: indices, warp: null, signal: null },
  decided_by: 'scripted.',
  seconds,
});

const detected: VerdictInput = {
  target: 3,
  detected_target: 3,
  changed: true,
  attack: null,
  before: { ba: 74.6, asr: null, asr_no_trigger: null },
  after: { ba: 73.9, asr: null, asr_no_trigger: null },
  evidence: {
    images: 250,
    stamped_images: 225,
    target: 3,
    trigger: 'pattern',
    before: { trigger_success: 97.33, target_without_trigger: 4, clean_accuracy: 74.8 },
    after: { trigger_success: 6.22, target_without_trigger: 3.11, clean_accuracy: 74.0 },
  },
  verification: null,
  detection_seconds: 181.4,
  scan: scan(3, [0, 0, 0.5, 5.14, 0, 0, 0, 0, 0, 0], 181.4),
};

test('verdict lines: a backdoor found and removed, the re-scan not run (its cost said)', () => {
  assert.deepEqual(verdictLines(detected), [
    'backdoor found towards class 3 (its size index 5.14, threshold 2)',
    'after the defense the found trigger sends 6.2 % of held-out images to class 3 (was 97.3 %; without it 3.1 %)',
    'held-out clean accuracy 74.8 % → 74.0 % (250 images, none of them used by the defense)',
    're-scan: not run (--verify scans the defended model again, about 181 s more)',
  ]);
});

test('verdict lines: the re-scan finds nothing, or the same class still, and the true figures beside', () => {
  const verified: VerdictInput = {
    ...detected,
    attack: 'badnets-grid',
    before: { ba: 74.61, asr: 99.88, asr_no_trigger: 0.4 },
    after: { ba: 73.9, asr: 2.5, asr_no_trigger: 0.9 },
    verification: {
      before: scan(3, [0, 0, 0.5, 5.14, 0, 0, 0, 0, 0, 0]),
      after: scan(null, [0, 0, 0.5, 0.81, 0, 0, 0, 0, 0, 0], 170),
      statistic: 'size',
      seconds: 170,
    },
  };
  const lines = verdictLines(verified);
  assert.equal(lines[3], "re-scan: no class stands out; class 3's size index 5.14 → 0.81 (threshold 2) (170 s)");
  assert.equal(
    lines[4],
    'with the attack (badnets-grid, test split, never shown to the defense): ASR 99.9 % → 2.5 % (without the trigger 0.9 %), BA 74.6 % → 73.9 %',
  );
  const still = verdictLines({
    ...verified,
    verification: { ...verified.verification!, after: scan(3, [0, 0, 0, 2.6, 0, 0, 0, 0, 0, 0]) },
  });
  assert.equal(
    still[3],
    "re-scan: class 3 still stands out (by the size scan); class 3's size index 5.14 → 2.60 (threshold 2) (170 s)",
  );
  const other = verdictLines({
    ...verified,
    verification: { ...verified.verification!, after: scan(7, [0, 0, 0, 0.3, 0, 0, 0, 3.1, 0, 0]) },
  });
  assert.match(other[3]!, /^re-scan: class 7 now stands out \(by the size scan\); class 3's size index 5\.14 → 0\.30/);
});

test("verdict lines: a clean model is left unchanged, with the scan's highest index and the held-out accuracy", () => {
  const lines = verdictLines({
    target: null,
    detected_target: null,
    changed: false,
    reason: 'no backdoor found',
    attack: null,
    before: { ba: 78.5, asr: null, asr_no_trigger: null },
    after: { ba: 78.5, asr: null, asr_no_trigger: null },
    evidence: {
      images: 250,
      stamped_images: null,
      target: null,
      trigger: null,
      before: { clean_accuracy: 78.4 },
      after: { clean_accuracy: 78.4 },
    },
    verification: {
      before: scan(null, [0, 1.2, 0, 0, 0, 0, 0.4, 0, 0, 0]),
      after: null,
      statistic: 'size',
      seconds: 0,
    },
    scan: {
      ...scan(null, []),
      indices: {
        size: [0, 1.2, 0, 0, 0, 0, 0.4, 0, 0, 0],
        warp: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0.3],
        signal: [0, 0, 0, 0, 0, 0, 0, 0, 0, 1.74],
      },
    },
  });
  assert.deepEqual(lines, [
    "no backdoor found (no class stands out: the highest, class 9's signal index 1.74, is under the threshold 2); the model is left unchanged",
    'held-out clean accuracy 78.4 % (250 images)',
    're-scan: not needed, the model is unchanged (0 s)',
  ]);
});

test('report.html: the verdict, the held-out table beside the true figures, and the before/after index chart', async () => {
  const html = await reportHtml(
    {
      method: 'mcldef',
      model: 'm.pth',
      data: 'cifar10:x',
      attack: 'badnets-grid',
      target: 3,
      detected_target: 3,
      before: { ba: 74.61, asr: 99.88, ra: 0.1, asr_no_trigger: 0.4 },
      after: { ba: 73.9, asr: 2.5, ra: 70, asr_no_trigger: 0.9 },
      der: 0.98,
      seconds: { total: 300 },
      epochs: [],
      evidence: detected.evidence!,
      verification: {
        before: scan(3, [0, 0, 0.5, 5.14, 0, 0, 0, 0, 0, 0]),
        after: scan(null, [0, 0, 0.5, 0.81, 0, 0, 0, 0, 0, 0]),
        statistic: 'size',
        seconds: 170,
      },
      verdict: verdictLines(detected),
    },
    null,
  );
  assert.match(html, /<h2>Did it work\?<\/h2>/);
  assert.match(html, /<li>backdoor found towards class 3 \(its size index 5\.14, threshold 2\)<\/li>/);
  assert.match(
    html,
    /<tr><th>before<\/th><td>97\.3<\/td><td>4\.0<\/td><td>74\.8<\/td><td>99\.9<\/td><td>74\.6<\/td><\/tr>/,
  );
  assert.match(
    html,
    /<tr><th>after<\/th><td>6\.2<\/td><td>3\.1<\/td><td>74\.0<\/td><td>2\.5<\/td><td>73\.9<\/td><\/tr>/,
  );
  assert.match(html, /size anomaly index/);
  // One bar per class and moment: 20 bars.
  const chart = html.slice(html.indexOf('Detection scan before and after'));
  assert.equal((chart.match(/mark-rect role-mark/g) ?? []).length, 1, 'one bar layer');
  assert.equal((chart.match(/mark-rule role-mark/g) ?? []).length, 1, 'the threshold line');
  assert.equal((chart.match(/<path aria-label="class: /g) ?? []).length, 20);
});

test('verdict lines: an index over 2 that the scan did not confirm is named as such', () => {
  const [first] = verdictLines({
    target: null,
    detected_target: null,
    changed: false,
    reason: 'no backdoor found',
    attack: null,
    before: { ba: 78.5, asr: null, asr_no_trigger: null },
    after: { ba: 78.5, asr: null, asr_no_trigger: null },
    scan: {
      ...scan(null, []),
      indices: { size: [0, 1.7, 0, 0], warp: [0, 0, 0, 2.13], signal: null },
    },
  });
  assert.equal(
    first,
    "no backdoor found (no class stands out: the highest, class 3's warp index 2.13, is over 2 but the scan's other tests did not confirm it); the model is left unchanged",
  );
});
