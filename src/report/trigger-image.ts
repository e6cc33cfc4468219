// The inverted trigger as a magnified PNG: the additive pattern Δ shown around mid-grey
// (0.5 + Δ/2); for the mask method, the mask beside the masked pattern; for a warp, its
// horizontal and vertical shifts side by side around mid-grey (scaled to the largest).
import { PNG } from 'pngjs';

import { tidy } from '../engine/scope.js';
import type { Tensor } from '../engine/tensor.js';

export interface TriggerLike {
  readonly method?: string;
  readonly pattern: Tensor;
  readonly mask: Tensor | null;
}

/** Panels (each C×H×W in [0, 1]) side by side, each pixel magnified `scale` times, as PNG bytes. */
export function panelsToPng(panels: readonly Tensor[], scale = 8, gap = 4): Buffer {
  const images = panels.map((panel) => ({
    data: panel.toFloat64Array(),
    channels: panel.size(0),
    height: panel.size(1),
    width: panel.size(2),
  }));
  const height = Math.max(...images.map((image) => image.height)) * scale;
  const width = images.reduce((total, image) => total + image.width * scale, 0) + gap * (images.length - 1);
  const png = new PNG({ width, height });
  png.data.fill(255);
  let left = 0;
  for (const image of images) {
    const plane = image.height * image.width;
    for (let y = 0; y < image.height * scale; y++) {
      for (let x = 0; x < image.width * scale; x++) {
        const source = Math.floor(y / scale) * image.width + Math.floor(x / scale);
        const target = (y * width + left + x) * 4;
        for (let c = 0; c < 3; c++) {
          const value = image.data[(image.channels === 1 ? 0 : c) * plane + source] ?? 0;
          png.data[target + c] = Math.round(255 * Math.min(1, Math.max(0, value)));
        }
        png.data[target + 3] = 255;
      }
    }
    left += image.width * scale + gap;
  }
  return PNG.sync.write(png);
}

export function triggerPng(trigger: TriggerLike, scale = 8): Buffer {
  return tidy(() => {
    // Signed values stretched to [0, 1] around grey: a warp's shifts, a signal's ±20/255 stripe.
    const stretched = (): Tensor => trigger.pattern.div(trigger.pattern.abs().max().clamp(1e-6).mul(2)).add(0.5);
    if (trigger.method === 'warp') {
      const shifts = stretched();
      return panelsToPng([shifts.narrow(0, 0, 1), shifts.narrow(0, 1, 1)], scale);
    }
    if (trigger.method === 'signal') return panelsToPng([stretched()], scale);
    if (trigger.mask === null) return panelsToPng([trigger.pattern.div(2).add(0.5)], scale);
    const mask = trigger.mask.unsqueeze(0);
    return panelsToPng([mask, trigger.pattern.mul(mask)], scale);
  });
}
