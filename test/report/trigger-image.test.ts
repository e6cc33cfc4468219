// trigger.png: the additive pattern around mid-grey, and a warp's two shift fields.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PNG } from 'pngjs';

import { tensor, tidy } from '../../src/index.js';
import { triggerPng } from '../../src/report/trigger-image.js';

/** The red channel at panel `panel` (each `width` pixels wide, 4-pixel gap), pixel (row, column), scale 1. */
const red = (png: PNG, width: number, panel: number, row: number, column: number): number =>
  png.data[(row * png.width + panel * (width + 4) + column) * 4]!;

test('trigger.png: Δ around mid-grey; a warp as its x and y shifts, scaled to the largest', () => {
  tidy(() => {
    // 3×1×2 additive pattern: Δ = 0 is mid-grey, Δ = 1 is white.
    const additive = PNG.sync.read(
      triggerPng({ pattern: tensor([0, 1, 0, 1, 0, 1], { shape: [3, 1, 2] }), mask: null }, 1),
    );
    assert.deepEqual([additive.width, additive.height], [2, 1]);
    assert.equal(red(additive, 2, 0, 0, 0), 128);
    assert.equal(red(additive, 2, 0, 0, 1), 255);
    // 2×1×2 shifts in pixels: x = (0, 0.5), y = (−0.25, 0); the largest |shift| (0.5) maps to white.
    const shifts = tensor([0, 0.5, -0.25, 0], { shape: [2, 1, 2] });
    const warp = PNG.sync.read(triggerPng({ method: 'warp', pattern: shifts, mask: null }, 1));
    assert.deepEqual([warp.width, warp.height], [2 + 4 + 2, 1], 'two panels, x then y');
    assert.equal(red(warp, 2, 0, 0, 0), 128);
    assert.equal(red(warp, 2, 0, 0, 1), 255);
    assert.equal(red(warp, 2, 1, 0, 0), 64);
    assert.equal(red(warp, 2, 1, 0, 1), 128);
  });
});
