// The host side of the sm_90a attention kernel (flash_sm90.cuh, launched by attention_sm90.cu), as
// plain declarations so that attention.cu and merge_attention_unmerge.cu, compiled for every
// architecture, can ask for it without seeing Hopper code.
//
// Opt-in: TOMA_FLASH=sm90 (or sm90-pingpong, the variant whose two consumer warpgroups take turns
// issuing their matrix products) in the environment, read once per process. It has been checked
// in the CPU emulation only, never timed or run on a card, so it is not the default.
#pragma once

namespace toma {
namespace flash {

struct Args;
struct MauArgs;

constexpr int kSm90TileRows = 128;  // query rows per block (the fused kernel's query groups)

// 0: not asked for (the default); 1: TOMA_FLASH=sm90; 2: TOMA_FLASH=sm90-pingpong.
int sm90_requested();

// Asked for and able to run here: compiled in (TOMA_SM90), device 0 of compute capability 9.0
// (sm_90a code runs on nothing else) and the driver's cuTensorMapEncodeTiled found through
// cudaGetDriverEntryPointByVersion (libcuda is never linked). When not, the first call prints why
// to stderr once and the callers use the sm_80 kernels.
bool sm90_usable();

// Dense attention (fp16 / bf16 q, k, v of one dtype, head dim 64 or 128) on the sm90 kernel,
// enqueued on the calling thread's stream; false (nothing launched) when these inputs do not
// qualify: bases not 16-byte aligned (TMA), more than 65535 heads or batch elements.
bool sm90_attention(const Args& a, int B, int heads, bool bf16);

// The fused merge-attention-unmerge kernel over `groups` query groups of kSm90TileRows rows (m as
// for mma_mau_attention, m.prefix_blocks counted in kSm90TileRows); same conditions on k and v.
bool sm90_mau_attention(const Args& a, const MauArgs& m, int groups, int heads, int B, bool bf16);

}  // namespace flash
}  // namespace toma
