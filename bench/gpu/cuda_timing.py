"""The CUDA-event timer both PyTorch peers use: median milliseconds of fn over reps runs after warm-up."""
import statistics


def time_ms(torch, fn, reps, warm):
    """Returns (median, min, max) in milliseconds, each run between two CUDA events."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times), min(times), max(times)
