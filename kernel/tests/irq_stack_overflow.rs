//! Unbounded recursion runs the boot stack into its unmapped guard page: the fault escalates to a
//! double fault on its own stack, whose report names the stack overflow, instead of corrupting the
//! memory below the stack.
//!
//! vireo-test: expect-failure at the boot stack's guard page: kernel stack overflow

#![no_std]
#![no_main]

vireo::test_main!(recursion_hits_the_guard_page);

/// Recurses forever, with a frame the optimiser cannot remove.
#[expect(unconditional_recursion, reason = "the point of the test")]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 32]);
    recurse(depth + 1) + frame[depth as usize % 32]
}

fn recursion_hits_the_guard_page() {
    let r = recurse(core::hint::black_box(0));
    vireo::println!("unreachable: {r}");
}
