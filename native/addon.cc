// Module entry: each source file registers its own family of functions.
#include "common.h"

namespace mcldef {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  initTensor(env, exports);
  initDispatch(env, exports);
  initAutograd(env, exports);
  initImage(env, exports);
  initMemory(env, exports);
  return exports;
}

}  // namespace mcldef

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return mcldef::init(env, exports); }

NODE_API_MODULE(mcldef_native, InitAddon)
