// Prints the compiler and linker flags for libtorch, for binding.gyp's <!@(...) expansions.
// Default: Debian's libtorch-dev. LIBTORCH=/path/to/libtorch selects another distribution
// (e.g. a CUDA build from pytorch.org); its lib folder is baked in as the rpath.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = process.env.LIBTORCH;
const what = process.argv[2];

function fail(message) {
  process.stderr.write(`\nmcldef: ${message}\n\n`);
  process.exit(1);
}

let includeDirs;
let libDir;
if (root) {
  includeDirs = [join(root, 'include'), join(root, 'include/torch/csrc/api/include')];
  libDir = join(root, 'lib');
  if (!existsSync(join(includeDirs[0], 'ATen/ATen.h'))) {
    fail(`LIBTORCH=${root} has no include/ATen/ATen.h: point it at an unpacked libtorch distribution.`);
  }
} else {
  includeDirs = ['/usr/include', '/usr/include/torch/csrc/api/include'];
  libDir = '/usr/lib/x86_64-linux-gnu';
  if (!existsSync('/usr/include/ATen/ATen.h')) {
    fail(
      'libtorch was not found (no /usr/include/ATen/ATen.h).\n' +
        '  On Debian/Ubuntu install it with:  sudo apt-get install libtorch-dev\n' +
        '  or set LIBTORCH=/path/to/libtorch to build against another distribution.',
    );
  }
}

if (!existsSync('/usr/include/jpeglib.h')) {
  fail(
    'libjpeg-turbo headers were not found (no /usr/include/jpeglib.h).\n  Install them with:  sudo apt-get install libjpeg-dev',
  );
}

// A CUDA build: link its CUDA libraries even though no symbol of theirs is named, since
// loading them is what registers the CUDA device with libtorch.
const cuda = existsSync(join(libDir, 'libtorch_cuda.so'))
  ? ['-Wl,--no-as-needed', '-ltorch_cuda', '-lc10_cuda', '-Wl,--as-needed']
  : [];
// PyTorch wheels built with the pre-C++11 string ABI need the same ABI here
// (LIBTORCH_CXX11_ABI=0; bench/device-check.sh reads it from torch).
const abi = process.env.LIBTORCH_CXX11_ABI;
const outputs = {
  include: includeDirs.join(' '),
  defines: abi === '0' || abi === '1' ? `_GLIBCXX_USE_CXX11_ABI=${abi}` : '',
  libs: [
    `-L${libDir}`,
    '-ltorch',
    '-ltorch_cpu',
    '-lc10',
    ...cuda,
    ...(root ? [`-Wl,-rpath,${libDir}`] : []),
    '-ljpeg',
  ].join(' '),
};
if (!(what in outputs)) fail(`torch-config.mjs: unknown query '${what}'`);
process.stdout.write(outputs[what]);
