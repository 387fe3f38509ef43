# CPU-only build of the addon, for machines where neither the prebuilt binary nor the cmake-js
# build (CMakeLists.txt, which adds the CUDA kernels) is usable. The source list is checked
# against csrc/ by test/build-files.test.ts so the two builds cannot drift apart.
{
  "variables": {
    "toma_cflags": ["-O3", "-std=c++17", "-fno-math-errno", "-Wall", "-Wno-unused-parameter"]
  },
  "targets": [
    {
      "target_name": "toma_avx2",
      "type": "static_library",
      "include_dirs": ["csrc"],
      "cflags_cc": ["<@(toma_cflags)", "-fPIC", "-mavx2", "-mfma", "-mf16c"],
      "cflags_cc!": ["-fno-exceptions"],
      "sources": ["csrc/cpu/simd/kernels_avx2.cc"]
    },
    {
      "target_name": "toma_avx512",
      "type": "static_library",
      "include_dirs": ["csrc"],
      "cflags_cc": ["<@(toma_cflags)", "-fPIC", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq",
                    "-mavx2", "-mfma", "-mf16c", "-Wno-uninitialized", "-Wno-maybe-uninitialized"],
      "cflags_cc!": ["-fno-exceptions"],
      "sources": ["csrc/cpu/simd/kernels_avx512.cc"]
    },
    {
      "target_name": "toma",
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except",
        "toma_avx2",
        "toma_avx512"
      ],
      "include_dirs": ["csrc"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["<@(toma_cflags)", "-fvisibility=hidden"],
      "cflags_cc!": ["-fno-exceptions"],
      "ldflags": ["-pthread"],
      "sources": [
        "csrc/core/dtype.cc",
        "csrc/core/result_memory.cc",
        "csrc/core/scratch.cc",
        "csrc/core/thread_pool.cc",
        "csrc/cpu/assignment_plan.cc",
        "csrc/cpu/attention.cc",
        "csrc/cpu/greedy.cc",
        "csrc/cpu/merge.cc",
        "csrc/cpu/merge_attention_unmerge.cc",
        "csrc/cpu/plan.cc",
        "csrc/cpu/regions.cc",
        "csrc/cpu/rows.cc",
        "csrc/cpu/similarity.cc",
        "csrc/cpu/tomesd_plan.cc",
        "csrc/cpu/unmerge.cc",
        "csrc/cpu/simd/dispatch.cc",
        "csrc/cpu/simd/kernels_scalar.cc",
        "csrc/cuda/no_cuda.cc",
        "csrc/napi/addon.cc",
        "csrc/napi/args.cc",
        "csrc/napi/backend_info.cc",
        "csrc/napi/baseline_ops.cc",
        "csrc/napi/device_tensor.cc",
        "csrc/napi/op_support.cc",
        "csrc/napi/ops.cc",
        "csrc/napi/plan_object.cc"
      ]
    }
  ]
}
