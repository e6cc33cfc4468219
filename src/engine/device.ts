// The device new tensors are made on when a call does not name one, as PyTorch's
// torch.set_default_device: set it once (`--device`, or `useDevice` in a script) and the
// datasets, models, triggers and every tensor the methods create land there.
import { native } from './native.js';
import type { Device } from './tensor.js';

let defaultDevice: Device = 'cpu';

export class DeviceError extends Error {
  override name = 'DeviceError';
}

export function getDefaultDevice(): Device {
  return defaultDevice;
}

/** CUDA devices this libtorch can use (0 for a CPU-only build). */
export function cudaDeviceCount(): number {
  return native.cudaDeviceCount();
}

/**
 * The device a choice names, checked: 'cpu', 'cuda' or 'cuda:N'; undefined picks CUDA where
 * the libtorch in use has a device, else the CPU. Asking for CUDA where there is none is an
 * error that says so.
 */
export function resolveDevice(choice?: string): Device {
  const count = cudaDeviceCount();
  if (choice === undefined) return count > 0 ? 'cuda' : 'cpu';
  if (choice === 'cpu') return 'cpu';
  const match = /^cuda(?::(\d+))?$/.exec(choice);
  if (match === null) throw new DeviceError(`device '${choice}': use cpu, cuda or cuda:N`);
  if (count === 0) {
    throw new DeviceError(
      `device '${choice}': this libtorch has no CUDA (${native.cudaAvailable() ? 'no GPU is visible' : 'a CPU-only build'}); use --device cpu, or build against a CUDA libtorch (LIBTORCH=/path/to/libtorch npm run build:native)`,
    );
  }
  const index = match[1] === undefined ? 0 : Number(match[1]);
  if (index >= count)
    throw new DeviceError(`device '${choice}': only ${count} CUDA device(s) (cuda:0..cuda:${count - 1})`);
  return choice;
}

/** Makes `device` (checked by resolveDevice) the default for new tensors; returns it. */
export function useDevice(choice?: string): Device {
  defaultDevice = resolveDevice(choice);
  return defaultDevice;
}
