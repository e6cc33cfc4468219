// A caching allocator for libtorch's CPU tensors.
//
// libtorch's default CPU allocator is malloc, and glibc hands large freed blocks back to the
// kernel (munmap above its mmap threshold, heap trimming above its trim threshold). A
// training step frees its activations, so the next step page-faults the same amount of
// fresh memory in again: on a 2-core EPYC, WRN-16-1 at batch 512 spent more time in the
// kernel than in the kernels. This allocator keeps freed blocks of 64 KiB and more by size
// and hands them out again for a request of the same size (or up to an eighth less), as
// PyTorch's CUDA caching allocator does for device memory. The cache is bounded; when a
// freed block would overflow it, the whole cache is returned first, which also clears the
// sizes of a finished phase. `releaseHostMemory()` returns it on demand (between grid cells).
#include "common.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/alignment.h>

#include <cstdlib>
#include <map>
#include <mutex>

namespace mcldef {

namespace {

constexpr size_t kHeader = c10::gAlignment;  // keeps the block's capacity, keeps alignment
constexpr size_t kMinCached = 64 * 1024;     // smaller blocks stay in malloc's own bins

struct Stats {
  size_t cachedBytes = 0;
  size_t cachedBlocks = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
};

class CachingHostAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t nbytes) const override {
    void* user = acquire(nbytes);
    return {user, user, &CachingHostAllocator::deleteBlock, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &CachingHostAllocator::deleteBlock; }

  static CachingHostAllocator& instance() {
    // Never destroyed: tensors may be freed during static destruction at exit.
    static auto* allocator = new CachingHostAllocator();
    return *allocator;
  }

  void configure(bool caching, size_t maxCachedBytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    caching_ = caching;
    maxCached_ = maxCachedBytes;
    if (!caching_ || stats_.cachedBytes > maxCached_) flushLocked();
  }

  size_t release() {
    std::lock_guard<std::mutex> lock(mutex_);
    return flushLocked();
  }

  Stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  static size_t& capacityOf(void* base) { return *static_cast<size_t*>(base); }

  void* acquire(size_t nbytes) const {
    if (nbytes >= kMinCached) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (caching_) {
        auto found = free_.lower_bound(nbytes);
        if (found != free_.end() && found->first - found->first / 8 <= nbytes) {
          void* base = found->second;
          stats_.cachedBytes -= found->first;
          stats_.cachedBlocks -= 1;
          stats_.hits += 1;
          free_.erase(found);
          return static_cast<char*>(base) + kHeader;
        }
        stats_.misses += 1;
      }
    }
    void* base = nullptr;
    if (posix_memalign(&base, c10::gAlignment, kHeader + nbytes) != 0) {
      // Out of memory: give the cache back and try once more.
      const_cast<CachingHostAllocator*>(this)->release();
      if (posix_memalign(&base, c10::gAlignment, kHeader + nbytes) != 0)
        TORCH_CHECK(false, "mcldef: out of host memory allocating ", nbytes, " bytes");
    }
    capacityOf(base) = nbytes;
    return static_cast<char*>(base) + kHeader;
  }

  static void deleteBlock(void* user) {
    if (user == nullptr) return;
    void* base = static_cast<char*>(user) - kHeader;
    instance().recycle(base);
  }

  void recycle(void* base) {
    const size_t capacity = capacityOf(base);
    if (capacity >= kMinCached) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (caching_ && capacity <= maxCached_) {
        if (stats_.cachedBytes + capacity > maxCached_) flushLocked();
        free_.emplace(capacity, base);
        stats_.cachedBytes += capacity;
        stats_.cachedBlocks += 1;
        return;
      }
    }
    std::free(base);
  }

  size_t flushLocked() {
    const size_t bytes = stats_.cachedBytes;
    for (auto& entry : free_) std::free(entry.second);
    free_.clear();
    stats_.cachedBytes = 0;
    stats_.cachedBlocks = 0;
    return bytes;
  }

  mutable std::mutex mutex_;
  mutable std::multimap<size_t, void*> free_;
  mutable Stats stats_;
  bool caching_ = true;
  size_t maxCached_ = 0;
};

bool g_installed = false;

// (caching, maxCachedBytes): installs the allocator on first use, then configures it.
MCLDEF_FN(configureHostAllocator) {
  return guarded(info, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[0].IsBoolean() || !info[1].IsNumber())
      throw Napi::TypeError::New(info.Env(), "configureHostAllocator(caching: boolean, maxCachedBytes: number)");
    const double maxCached = info[1].As<Napi::Number>().DoubleValue();
    if (!(maxCached >= 0)) throw Napi::RangeError::New(info.Env(), "maxCachedBytes must be ≥ 0");
    auto& allocator = CachingHostAllocator::instance();
    allocator.configure(info[0].As<Napi::Boolean>().Value(), static_cast<size_t>(maxCached));
    if (!g_installed) {
      c10::SetCPUAllocator(&allocator, /*priority=*/1);
      g_installed = true;
    }
    return info.Env().Undefined();
  });
}

// Frees every cached block; returns the bytes returned.
MCLDEF_FN(releaseHostMemory) {
  return guarded(info, [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(CachingHostAllocator::instance().release()));
  });
}

MCLDEF_FN(hostMemoryStats) {
  return guarded(info, [&]() -> Napi::Value {
    const Stats stats = CachingHostAllocator::instance().stats();
    auto result = Napi::Object::New(info.Env());
    result.Set("installed", g_installed);
    result.Set("cachedBytes", static_cast<double>(stats.cachedBytes));
    result.Set("cachedBlocks", static_cast<double>(stats.cachedBlocks));
    result.Set("hits", static_cast<double>(stats.hits));
    result.Set("misses", static_cast<double>(stats.misses));
    return result;
  });
}

}  // namespace

void initMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("configureHostAllocator", Napi::Function::New(env, configureHostAllocator, "configureHostAllocator"));
  exports.Set("releaseHostMemory", Napi::Function::New(env, releaseHostMemory, "releaseHostMemory"));
  exports.Set("hostMemoryStats", Napi::Function::New(env, hostMemoryStats, "hostMemoryStats"));
}

}  // namespace mcldef
