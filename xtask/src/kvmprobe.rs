//! A quick measure of how fast `/dev/kvm` runs guest code: a throw-away VM with one vCPU runs a
//! counted loop in real mode (the mode QEMU's firmware starts in) until `hlt`, and the vCPU
//! thread's CPU time is read around `KVM_RUN` (so a busy host preempting the probe does not
//! make KVM look slow). Natively the loop should take tens of microseconds (an estimate from
//! instruction rates; no native KVM was at hand to measure it); a hypervisor that emulates
//! every instruction takes a thousand times longer.

use std::{fs::File, io, os::fd::AsRawFd, ptr, time::Duration};

/// Iterations of the guest loop; each is two instructions (`dec ecx`, `jnz`).
pub const LOOP_ITERATIONS: u32 = 50_000;

/// `_IO(KVMIO, nr)`, `_IOR`/`_IOW(KVMIO, nr, size)` of `<linux/kvm.h>` (KVMIO = 0xAE).
const fn kvm_io(nr: u64) -> u64 {
    0xAE00 | nr
}
const fn kvm_iow(nr: u64, size: u64) -> u64 {
    (1 << 30) | (size << 16) | 0xAE00 | nr
}
const fn kvm_ior(nr: u64, size: u64) -> u64 {
    (2 << 30) | (size << 16) | 0xAE00 | nr
}

/// `struct kvm_userspace_memory_region`.
#[repr(C)]
struct MemoryRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

/// `struct kvm_regs`: rax ... r15, rip, rflags.
const REGS_LEN: usize = 18;
/// `struct kvm_sregs` is 312 bytes: eight `kvm_segment`s of 24 first, `cs` the first of them.
const SREGS_LEN: usize = 312;
const CS_BASE: usize = 0;
const CS_SELECTOR: usize = 12;

const KVM_GET_API_VERSION: u64 = kvm_io(0x00);
const KVM_CREATE_VM: u64 = kvm_io(0x01);
const KVM_GET_VCPU_MMAP_SIZE: u64 = kvm_io(0x04);
const KVM_CREATE_VCPU: u64 = kvm_io(0x41);
const KVM_SET_USER_MEMORY_REGION: u64 = kvm_iow(0x46, size_of::<MemoryRegion>() as u64);
const KVM_RUN: u64 = kvm_io(0x80);
const KVM_SET_REGS: u64 = kvm_iow(0x82, (REGS_LEN * 8) as u64);
const KVM_GET_SREGS: u64 = kvm_ior(0x83, SREGS_LEN as u64);
const KVM_SET_SREGS: u64 = kvm_iow(0x84, SREGS_LEN as u64);
/// `KVM_EXIT_HLT`, the `exit_reason` (offset 8 of `struct kvm_run`) after the guest's `hlt`.
const KVM_EXIT_HLT: u32 = 5;
const EXIT_REASON_OFFSET: usize = 8;

/// Where the guest code sits (guest physical = linear: real mode, `cs` base 0).
const CODE_ADDR: u64 = 0x1000;
const GUEST_MEMORY: usize = 0x2000;

/// The guest: `mov ecx, LOOP_ITERATIONS; 1: dec ecx; jnz 1b; hlt` in 16-bit code.
fn guest_code() -> [u8; 11] {
    let n = LOOP_ITERATIONS.to_le_bytes();
    [
        0x66, 0xB9, n[0], n[1], n[2], n[3], // mov ecx, imm32
        0x66, 0x49, // dec ecx
        0x75, 0xFC, // jnz -4 (back to dec)
        0xF4, // hlt
    ]
}

fn ioctl(fd: &impl AsRawFd, request: u64, arg: u64) -> io::Result<i32> {
    // SAFETY: every request made here passes either nothing (`arg` 0 or a plain integer) or a
    // pointer to a live buffer of the size the request number encodes; the kernel reads or
    // writes only that.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A file descriptor returned by a KVM ioctl, closed on drop.
fn owned(fd: i32) -> File {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` was just returned by the kernel for this process and nothing else owns it.
    unsafe { File::from_raw_fd(fd) }
}

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(len: usize, fd: Option<&File>) -> io::Result<Self> {
        let (flags, fd) = match fd {
            Some(f) => (libc::MAP_SHARED, f.as_raw_fd()),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping chosen by the kernel (null hint); nothing else uses its range.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { addr, len })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` readable and writable bytes, live while `self` is.
        unsafe { std::slice::from_raw_parts_mut(self.addr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `new` and is unmapped once.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// The calling thread's CPU time.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs the probe loop on `/dev/kvm` and returns the CPU time the vCPU took for it.
///
/// # Errors
/// Any KVM call that fails, or a guest that stops other than at its `hlt`.
pub fn measure() -> Result<Duration, String> {
    fn step(what: &'static str) -> impl Fn(io::Error) -> String {
        move |e| format!("{what}: {e}")
    }
    let kvm = File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(step("open /dev/kvm"))?;
    ioctl(&kvm, KVM_GET_API_VERSION, 0).map_err(step("KVM_GET_API_VERSION"))?;
    let vm = owned(ioctl(&kvm, KVM_CREATE_VM, 0).map_err(step("KVM_CREATE_VM"))?);

    let mut memory = Mapping::new(GUEST_MEMORY, None).map_err(step("guest memory"))?;
    let code = guest_code();
    memory.bytes()[CODE_ADDR as usize..][..code.len()].copy_from_slice(&code);
    let region = MemoryRegion {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: GUEST_MEMORY as u64,
        userspace_addr: memory.addr as u64,
    };
    ioctl(&vm, KVM_SET_USER_MEMORY_REGION, (&raw const region) as u64)
        .map_err(step("KVM_SET_USER_MEMORY_REGION"))?;

    let vcpu = owned(ioctl(&vm, KVM_CREATE_VCPU, 0).map_err(step("KVM_CREATE_VCPU"))?);
    let run_len = ioctl(&kvm, KVM_GET_VCPU_MMAP_SIZE, 0).map_err(step("KVM_GET_VCPU_MMAP_SIZE"))?;
    let mut run = Mapping::new(run_len as usize, Some(&vcpu)).map_err(step("kvm_run"))?;

    // Real mode at CODE_ADDR: `cs` with base and selector 0, `rip` at the code.
    let mut sregs = [0u8; SREGS_LEN];
    ioctl(&vcpu, KVM_GET_SREGS, sregs.as_mut_ptr() as u64).map_err(step("KVM_GET_SREGS"))?;
    sregs[CS_BASE..CS_BASE + 8].fill(0);
    sregs[CS_SELECTOR..CS_SELECTOR + 2].fill(0);
    ioctl(&vcpu, KVM_SET_SREGS, sregs.as_ptr() as u64).map_err(step("KVM_SET_SREGS"))?;
    let mut regs = [0u64; REGS_LEN];
    regs[16] = CODE_ADDR; // rip
    regs[17] = 0x2; // rflags: bit 1 is always set
    ioctl(&vcpu, KVM_SET_REGS, regs.as_ptr() as u64).map_err(step("KVM_SET_REGS"))?;

    let start = thread_cpu_time();
    loop {
        match ioctl(&vcpu, KVM_RUN, 0) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("KVM_RUN: {e}")),
        }
    }
    let took = thread_cpu_time().saturating_sub(start);
    let exit = &run.bytes()[EXIT_REASON_OFFSET..EXIT_REASON_OFFSET + 4];
    let reason = u32::from_ne_bytes(exit.try_into().expect("four bytes"));
    if reason != KVM_EXIT_HLT {
        return Err(format!(
            "the probe guest stopped with exit reason {reason}, not hlt"
        ));
    }
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_linux() {
        // The values <linux/kvm.h> gives on x86_64.
        assert_eq!(KVM_CREATE_VM, 0xAE01);
        assert_eq!(KVM_RUN, 0xAE80);
        assert_eq!(KVM_SET_USER_MEMORY_REGION, 0x4020_AE46);
        assert_eq!(KVM_SET_REGS, 0x4090_AE82);
        assert_eq!(KVM_GET_SREGS, 0x8138_AE83);
        assert_eq!(KVM_SET_SREGS, 0x4138_AE84);
    }

    #[test]
    fn the_guest_loops_back_to_its_decrement() {
        let code = guest_code();
        // jnz's target: the address after it plus its signed displacement.
        let after_jnz = 10i32;
        assert_eq!(after_jnz + i32::from(code[9] as i8), 6);
        assert_eq!(&code[6..8], &[0x66, 0x49]);
        assert_eq!(code[10], 0xF4);
    }
}
