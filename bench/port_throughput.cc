// How many of the matmul kernels' multiply instructions does this CPU issue per cycle? An
// experiment for issue 13, not product code. It times loops of 12 independent 256-bit
// instructions (no loads or stores, so nothing but the execution ports bounds them), estimates
// the clock around each from a chain of dependent integer adds (one a cycle on every x86-64
// core of the last decade), and prints each instruction's issue rate per cycle:
//   - vfmadd231ps (the float path: 8 multiply-adds),
//   - vpmaddubsw (the AVX2 int8 path: 32 byte multiply-adds into 16-bit pairs),
//   - vpmaddwd (its 16-bit to 32-bit flush), vpaddw (its 16-bit accumulation),
//   - vpmaddubsw and vfmadd231ps interleaved (whether they share a port).
// The int8 path rounds activations twice (crates/mlx/src/qdot.h, kRoundings), so a vpmaddubsw
// does 16 of the model's multiply-adds; a vfmadd231ps does 8.
//
//   g++ -O2 bench/port_throughput.cc -o port_throughput && ./port_throughput
//
// Needs AVX2 and FMA (it says so and exits otherwise). Run it on an idle machine.
#include <chrono>
#include <cstdio>

namespace {

// 12 independent instructions `op` (AT&T operands: ymm15, ymm14 -> ymm0..ymm11)
#define TWELVE(op)                                                                              \
  op " %%ymm15, %%ymm14, %%ymm0\n\t" op " %%ymm15, %%ymm14, %%ymm1\n\t" op                      \
     " %%ymm15, %%ymm14, %%ymm2\n\t" op " %%ymm15, %%ymm14, %%ymm3\n\t" op                      \
     " %%ymm15, %%ymm14, %%ymm4\n\t" op " %%ymm15, %%ymm14, %%ymm5\n\t" op                      \
     " %%ymm15, %%ymm14, %%ymm6\n\t" op " %%ymm15, %%ymm14, %%ymm7\n\t" op                      \
     " %%ymm15, %%ymm14, %%ymm8\n\t" op " %%ymm15, %%ymm14, %%ymm9\n\t" op                      \
     " %%ymm15, %%ymm14, %%ymm10\n\t" op " %%ymm15, %%ymm14, %%ymm11\n\t"
// six of a, six of b, alternating
#define ALTERNATE(a, b)                                                                         \
  a " %%ymm15, %%ymm14, %%ymm0\n\t" b " %%ymm15, %%ymm14, %%ymm1\n\t" a                         \
    " %%ymm15, %%ymm14, %%ymm2\n\t" b " %%ymm15, %%ymm14, %%ymm3\n\t" a                         \
    " %%ymm15, %%ymm14, %%ymm4\n\t" b " %%ymm15, %%ymm14, %%ymm5\n\t" a                         \
    " %%ymm15, %%ymm14, %%ymm6\n\t" b " %%ymm15, %%ymm14, %%ymm7\n\t" a                         \
    " %%ymm15, %%ymm14, %%ymm8\n\t" b " %%ymm15, %%ymm14, %%ymm9\n\t" a                         \
    " %%ymm15, %%ymm14, %%ymm10\n\t" b " %%ymm15, %%ymm14, %%ymm11\n\t"
// n iterations of `body`, the vector registers it writes declared clobbered
#define LOOP(name, body)                                                                        \
  __attribute__((noinline)) void name(long n) {                                                 \
    __asm__ volatile("vxorps %%ymm14, %%ymm14, %%ymm14\n\tvxorps %%ymm15, %%ymm15, %%ymm15\n"   \
                     "1:\n\t" body "dec %0\n\tjnz 1b\n\t"                                        \
                     : "+r"(n)                                                                   \
                     :                                                                           \
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",  \
                       "xmm9", "xmm10", "xmm11", "xmm14", "xmm15", "cc");                        \
  }

LOOP(fma, TWELVE("vfmadd231ps"))
LOOP(maddubs, TWELVE("vpmaddubsw"))
LOOP(maddwd, TWELVE("vpmaddwd"))
LOOP(addw, TWELVE("vpaddw"))
LOOP(maddubs_fma, ALTERNATE("vpmaddubsw", "vfmadd231ps"))

// four dependent adds per iteration: one a cycle
__attribute__((noinline)) void add_chain(long n) {
  long x = 0;
  __asm__ volatile(
      "1:\n\tadd $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\tadd $1, %1\n\tdec %0\n\tjnz 1b\n\t"
      : "+r"(n), "+r"(x)
      :
      : "cc");
}

template <class F>
double seconds(F f, long n) {
  f(n / 100);  // warm up (and let the clock settle)
  const auto t0 = std::chrono::steady_clock::now();
  f(n);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::puts("port_throughput needs AVX2 and FMA");
    return 1;
  }
  const long chain = 200'000'000, loops = 100'000'000;
  const auto clock = [&] { return 4.0 * chain / seconds(add_chain, chain); };
  const struct {
    const char* name;
    void (*f)(long);
  } rows[] = {{"vfmadd231ps", fma},
              {"vpmaddubsw", maddubs},
              {"vpmaddwd", maddwd},
              {"vpaddw", addw},
              {"vpmaddubsw + vfmadd231ps", maddubs_fma}};
  for (const auto& r : rows) {
    // the clock around each loop (it can drift with load and temperature)
    const double before = clock(), t = seconds(r.f, loops), hz = (before + clock()) / 2;
    std::printf("%-26s %.2f per cycle (clock about %.2f GHz)\n", r.name, 12.0 * loops / t / hz, hz / 1e9);
  }
  return 0;
}
