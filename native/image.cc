// JPEG decoding with libjpeg-turbo's defaults (islow DCT, fancy upsampling): the same
// pixels as PIL, which the PyTorch world uses to read JPEG datasets. Whole file lists are
// read and decoded on worker threads, so 60,000 CIFAR images cost no per-file JS call.
// Only N-API here: this file needs no libtorch headers (they cost ~15 s a compile).
#include <napi.h>

#include <jpeglib.h>

#include <cstring>
#include <string>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <thread>
#include <vector>

namespace mcldef {

#define MCLDEF_FN(name) Napi::Value name(const Napi::CallbackInfo& info)

namespace {

struct JpegError {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void onJpegError(j_common_ptr info) {
  auto* error = reinterpret_cast<JpegError*>(info->err);
  (*info->err->format_message)(info, error->message);
  std::longjmp(error->jump, 1);
}

void ignoreJpegWarning(j_common_ptr, int) {}

struct Decoded {
  std::vector<uint8_t> pixels;  // H×W×C, row-major
  int height = 0;
  int width = 0;
  std::string error;
};

// C-style body: no objects with destructors live across setjmp/longjmp.
bool decodeInto(const uint8_t* bytes, size_t length, int channels, Decoded* out) {
  jpeg_decompress_struct info;
  JpegError error;
  info.err = jpeg_std_error(&error.manager);
  error.manager.error_exit = onJpegError;
  error.manager.emit_message = ignoreJpegWarning;
  if (setjmp(error.jump)) {
    out->error = error.message;
    jpeg_destroy_decompress(&info);
    return false;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, bytes, static_cast<unsigned long>(length));
  jpeg_read_header(&info, TRUE);
  info.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&info);
  out->height = static_cast<int>(info.output_height);
  out->width = static_cast<int>(info.output_width);
  size_t stride = static_cast<size_t>(info.output_width) * info.output_components;
  out->pixels.resize(stride * info.output_height);
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = out->pixels.data() + stride * info.output_scanline;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return true;
}

void decodeFile(const std::string& path, int channels, Decoded* out) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    out->error = "cannot open file";
    return;
  }
  std::vector<uint8_t> bytes;
  uint8_t chunk[65536];
  size_t got;
  while ((got = std::fread(chunk, 1, sizeof chunk, file)) > 0) bytes.insert(bytes.end(), chunk, chunk + got);
  std::fclose(file);
  if (!decodeInto(bytes.data(), bytes.size(), channels, out)) out->error = "not a valid JPEG: " + out->error;
}

// decodeJpegFiles(paths: string[], channels: 1|3, threads: number)
//   -> { pixels: Buffer (all images concatenated, H×W×C each), sizes: Int32Array [h0, w0, h1, w1, ...] }
MCLDEF_FN(decodeJpegFiles) {
  Napi::Env env = info.Env();
  auto list = info[0].As<Napi::Array>();
  int channels = info[1].As<Napi::Number>().Int32Value();
  int threads = std::max(1, info[2].As<Napi::Number>().Int32Value());
  if (channels != 1 && channels != 3) throw Napi::RangeError::New(env, "decodeJpegFiles: channels must be 1 or 3");
  std::vector<std::string> paths(list.Length());
  for (uint32_t i = 0; i < paths.size(); ++i) paths[i] = list.Get(i).As<Napi::String>().Utf8Value();
  std::vector<Decoded> decoded(paths.size());
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t]() {
      for (size_t i = t; i < paths.size(); i += threads) decodeFile(paths[i], channels, &decoded[i]);
    });
  }
  for (auto& worker : workers) worker.join();
  size_t total = 0;
  for (size_t i = 0; i < decoded.size(); ++i) {
    if (!decoded[i].error.empty()) throw Napi::Error::New(env, paths[i] + ": " + decoded[i].error);
    total += decoded[i].pixels.size();
  }
  auto pixels = Napi::Buffer<uint8_t>::New(env, total);
  auto sizes = Napi::Int32Array::New(env, decoded.size() * 2);
  size_t offset = 0;
  for (size_t i = 0; i < decoded.size(); ++i) {
    std::memcpy(pixels.Data() + offset, decoded[i].pixels.data(), decoded[i].pixels.size());
    offset += decoded[i].pixels.size();
    sizes[2 * i] = decoded[i].height;
    sizes[2 * i + 1] = decoded[i].width;
  }
  auto result = Napi::Object::New(env);
  result.Set("pixels", pixels);
  result.Set("sizes", sizes);
  return result;
}

// decodeJpeg(bytes: Uint8Array, channels) -> { pixels: Buffer, height, width }
MCLDEF_FN(decodeJpeg) {
  Napi::Env env = info.Env();
  auto bytes = info[0].As<Napi::Uint8Array>();
  int channels = info[1].As<Napi::Number>().Int32Value();
  if (channels != 1 && channels != 3) throw Napi::RangeError::New(env, "decodeJpeg: channels must be 1 or 3");
  Decoded decoded;
  if (!decodeInto(bytes.Data(), bytes.ByteLength(), channels, &decoded)) {
    throw Napi::Error::New(env, "not a valid JPEG: " + decoded.error);
  }
  auto result = Napi::Object::New(env);
  result.Set("pixels", Napi::Buffer<uint8_t>::Copy(env, decoded.pixels.data(), decoded.pixels.size()));
  result.Set("height", decoded.height);
  result.Set("width", decoded.width);
  return result;
}

}  // namespace

void initImage(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeJpegFiles", Napi::Function::New(env, decodeJpegFiles, "decodeJpegFiles"));
  exports.Set("decodeJpeg", Napi::Function::New(env, decodeJpeg, "decodeJpeg"));
}

}  // namespace mcldef
