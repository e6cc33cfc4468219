{
  "targets": [
    {
      "target_name": "mcldef_native",
      "sources": ["native/addon.cc", "native/tensor.cc", "native/dispatch.cc", "native/autograd.cc", "native/image.cc", "native/memory.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<!@(node native/torch-config.mjs include)"],
      "libraries": ["<!@(node native/torch-config.mjs libs)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "<!@(node native/torch-config.mjs defines)"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations"]
    }
  ]
}
