//! The virtio-blk benchmark application that `cargo xtask bench blk` boots, once per job and run.
//!
//! It drives the first block device with the deep-queue API (`submit_batch` / `wait` / `poll`):
//! `qd` requests are kept in flight; every wake-up takes all ready completions and resubmits
//! their buffers with one `submit_batch` (one notification at most). After `warmup` seconds of
//! unmeasured I/O it measures for `secs` seconds and prints one machine-readable line:
//!
//! ```text
//! vireo-bench: job=randread bs=4096 qd=1 layout=split irq=msix ios=.. ns=.. planned_ns=.. bytes=.. kicks=.. irqs=.. waits=.. missed=.. renotified=.. lat_mean_ns=.. lat_p99_ns=.. lat_max_ns=..
//! ```
//!
//! `ns` is the measured phase's actual length (from its start to the clock read that found the
//! deadline passed), `planned_ns` its planned length (`secs`): a phase ends only at a clock read
//! after a completion, so one stalled request shows as `ns` well above `planned_ns`. The three
//! latencies are 0 unless per-request latency is recorded (`lat=1`, the default, at `qd=1`);
//! `lat_max_ns` is the longest single request, timed like the others but never capped (the
//! samples behind mean and p99 are each capped at `u32::MAX` ns, about 4.3 s).
//!
//! Command line (after `--` with `cargo xtask run --example blkbench`): `job=randread|randwrite|
//! seqread bs=BYTES qd=N secs=S warmup=S [batch=N] [span_mib=N] [seed=N] [lat=0|1]`, plus the kernel's
//! `vireo.blk.*` options (`vireo.blk.polled=1` polls instead of sleeping on MSI-X).
//!
//! Timing: the clock (`Instant`, the TSC) is read once per completion batch at queue depth 1 —
//! the time since the previous completion is that request's latency, including the benchmark's
//! own resubmission — and once every 64 completions otherwise (deadline checks only; no
//! latency). Under TCG a clock read is cheap; under nested KVM each `rdtsc` can cost tens of
//! microseconds, which then shows in the QD1 latency: `lat=0` turns per-request timing off.
//!
//! vireo-run: qemu -m 1G -object iothread,id=io0
//! vireo-run: qemu -blockdev driver=null-co,node-name=n0,size=8589934592,read-zeroes=on
//! vireo-run: qemu -device virtio-blk-pci,drive=n0,iothread=io0,disable-legacy=on
//! vireo-run: append job=randread bs=4096 qd=1 secs=2 warmup=1

#![no_std]
#![no_main]

extern crate alloc;

use alloc::{collections::VecDeque, vec::Vec};
use core::time::Duration;

use vireo::{
    block::{self, BlockDevice, BlockStats, Buffer, Request, RequestId, SECTOR_SIZE},
    mm::DeviceAlloc,
    println,
    time::Instant,
};

vireo::main!(main);

/// The clock is read once per this many completions when latencies are not recorded.
const COMPLETIONS_PER_CLOCK_READ: u64 = 64;
/// Latency samples kept at most (p99 is computed over them).
const MAX_SAMPLES: usize = 1 << 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    RandRead,
    RandWrite,
    SeqRead,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::RandRead => "randread",
            Self::RandWrite => "randwrite",
            Self::SeqRead => "seqread",
        }
    }
}

/// The job, from the command line.
#[derive(Debug, Clone, Copy)]
struct Args {
    kind: Kind,
    bs: u64,
    qd: usize,
    secs: u64,
    warmup: u64,
    span_mib: u64,
    seed: u64,
    lat: bool,
    /// Completions taken at most before the freed buffers are resubmitted.
    batch: u64,
}

impl Args {
    fn parse(cmdline: &str) -> Result<Self, &'static str> {
        let mut a = Args {
            kind: Kind::RandRead,
            bs: 4096,
            qd: 1,
            secs: 5,
            warmup: 1,
            span_mib: 0,
            seed: 1,
            lat: true,
            batch: 0,
        };
        for word in cmdline.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let num = || {
                value
                    .parse::<u64>()
                    .map_err(|_| "bad number on the command line")
            };
            match key {
                "job" => {
                    a.kind = match value {
                        "randread" => Kind::RandRead,
                        "randwrite" => Kind::RandWrite,
                        "seqread" => Kind::SeqRead,
                        _ => return Err("job must be randread, randwrite or seqread"),
                    }
                }
                "bs" => a.bs = num()?,
                "qd" => a.qd = num()? as usize,
                "secs" => a.secs = num()?,
                "warmup" => a.warmup = num()?,
                "span_mib" => a.span_mib = num()?,
                "seed" => a.seed = num()?,
                "lat" => a.lat = num()? != 0,
                "batch" => a.batch = num()?,
                _ => {}
            }
        }
        if a.batch == 0 {
            a.batch = a.qd as u64;
        }
        if a.bs == 0 || !a.bs.is_multiple_of(SECTOR_SIZE) || a.qd == 0 || a.secs == 0 {
            return Err("bs must be a non-zero multiple of 512, qd and secs non-zero");
        }
        Ok(a)
    }
}

/// xorshift64*: a cheap deterministic offset generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Where requests go: `slots` request-sized slots of the disk (or of its first `span_mib`).
struct Offsets {
    kind: Kind,
    slots: u64,
    next_seq: u64,
    rng: Rng,
    sectors_per_request: u64,
}

impl Offsets {
    fn next_sector(&mut self) -> u64 {
        let slot = match self.kind {
            Kind::SeqRead => {
                let s = self.next_seq;
                self.next_seq = (s + 1) % self.slots;
                s
            }
            Kind::RandRead | Kind::RandWrite => self.rng.next() % self.slots,
        };
        slot * self.sectors_per_request
    }
}

/// What one measured phase counted.
#[derive(Default)]
struct Tally {
    ios: u64,
    bytes: u64,
    elapsed: Duration,
    /// Per-request latencies in ns, each capped at `u32::MAX` (at most `MAX_SAMPLES` of them).
    samples: Vec<u32>,
    /// The longest per-request latency in ns, uncapped, over every request timed (also those
    /// beyond `MAX_SAMPLES`); 0 when latency is not recorded.
    max_ns: u64,
}

struct Bench<'a> {
    dev: &'a BlockDevice,
    args: Args,
    offsets: Offsets,
    /// Buffer lists not in flight (one buffer each). A completion gives its list back and the
    /// next request reuses it, so the steady state allocates nothing.
    free: Vec<Vec<Buffer>>,
    requests: VecDeque<Request<DeviceAlloc>>,
    ids: Vec<RequestId>,
    in_flight: usize,
}

impl Bench<'_> {
    fn request(&mut self, buffers: Vec<Buffer>) -> Request<DeviceAlloc> {
        let sector = self.offsets.next_sector();
        match self.args.kind {
            Kind::RandWrite => Request::Write { sector, buffers },
            Kind::RandRead | Kind::SeqRead => Request::Read { sector, buffers },
        }
    }

    /// Submits a request for every free buffer, with one notification.
    fn refill(&mut self) -> Result<(), &'static str> {
        while let Some(b) = self.free.pop() {
            let r = self.request(b);
            self.requests.push_back(r);
        }
        if self.requests.is_empty() {
            return Ok(());
        }
        self.ids.clear();
        let result = self.dev.submit_batch(0, &mut self.requests, &mut self.ids);
        self.in_flight += self.ids.len();
        result.map_err(|e| {
            println!("blkbench: submit: {e}");
            "submission failed"
        })
    }

    /// Takes back one completion: its buffer list is free again.
    fn complete(&mut self, c: block::Completion) -> Result<(), &'static str> {
        self.in_flight -= 1;
        if let Err(e) = c.result {
            println!("blkbench: request failed: {e}");
            return Err("a request failed");
        }
        self.free.push(c.buffers);
        Ok(())
    }

    /// Runs the job for `d`, counting completions and, if `record_latency`, timing each one.
    fn phase(&mut self, d: Duration, record_latency: bool) -> Result<Tally, &'static str> {
        let mut tally = Tally::default();
        if record_latency {
            tally.samples = Vec::with_capacity(MAX_SAMPLES.min(1 << 16));
        }
        let start = Instant::now();
        let deadline = start + d;
        let mut last = start;
        let mut since_clock = 0u64;
        self.refill()?;
        loop {
            let c = self.dev.wait(0).map_err(|e| {
                println!("blkbench: wait: {e}");
                "wait failed"
            })?;
            self.complete(c)?;
            let mut done = 1u64;
            while done < self.args.batch {
                let Some(c) = self.dev.poll(0) else { break };
                self.complete(c)?;
                done += 1;
            }
            tally.ios += done;
            since_clock += done;
            if record_latency || since_clock >= COMPLETIONS_PER_CLOCK_READ {
                since_clock = 0;
                let now = Instant::now();
                if record_latency {
                    // At queue depth 1 every batch is one request: the time since the previous
                    // completion is its latency.
                    let ns = u64::try_from((now - last).as_nanos()).unwrap_or(u64::MAX);
                    tally.max_ns = tally.max_ns.max(ns);
                    if tally.samples.len() < MAX_SAMPLES {
                        tally.samples.push(ns.min(u64::from(u32::MAX)) as u32);
                    }
                }
                last = now;
                if now >= deadline {
                    tally.elapsed = now - start;
                    break;
                }
            }
            self.refill()?;
        }
        tally.bytes = tally.ios * self.args.bs;
        Ok(tally)
    }

    /// Waits for every request still in flight.
    fn drain(&mut self) -> Result<(), &'static str> {
        while self.in_flight > 0 {
            let c = self.dev.wait(0).map_err(|_| "wait failed while draining")?;
            self.complete(c)?;
        }
        Ok(())
    }
}

fn main() -> Result<(), &'static str> {
    let args = Args::parse(vireo::boot_info().cmdline())?;
    let dev = block::devices().first().ok_or("no virtio-blk device")?;
    let info = dev.info();
    println!("blkbench: {dev}");
    let disk_bytes = info.blocks * u64::from(info.block_size);
    let span = if args.span_mib == 0 {
        disk_bytes
    } else {
        (args.span_mib << 20).min(disk_bytes)
    };
    if !args.bs.is_multiple_of(u64::from(info.block_size)) || span < args.bs {
        return Err("bs is not a multiple of the block size, or larger than the disk");
    }
    let mut free = Vec::with_capacity(args.qd);
    for i in 0..args.qd {
        let mut b = block::buffer(args.bs as usize).map_err(|_| "out of device memory")?;
        b.fill(i as u8 ^ 0x5a);
        // Room for the driver's status byte too (it lays reads out in the caller's list).
        let mut list = Vec::with_capacity(2);
        list.push(b);
        free.push(list);
    }
    let mut bench = Bench {
        dev,
        args,
        offsets: Offsets {
            kind: args.kind,
            slots: span / args.bs,
            next_seq: 0,
            rng: Rng(args.seed | 1),
            sectors_per_request: args.bs / SECTOR_SIZE,
        },
        free,
        requests: VecDeque::with_capacity(args.qd),
        ids: Vec::with_capacity(args.qd),
        in_flight: 0,
    };
    if args.warmup > 0 {
        bench.phase(Duration::from_secs(args.warmup), false)?;
    }
    let before = dev.stats();
    let planned = Duration::from_secs(args.secs);
    let mut tally = bench.phase(planned, args.lat && args.qd == 1)?;
    let after = dev.stats();
    bench.drain()?;
    report(&args, dev, &mut tally, planned, before, after);
    Ok(())
}

fn report(
    args: &Args,
    dev: &BlockDevice,
    t: &mut Tally,
    planned: Duration,
    before: BlockStats,
    after: BlockStats,
) {
    let info = dev.info();
    let (mean, p99) = if t.samples.is_empty() {
        (0, 0)
    } else {
        let sum: u64 = t.samples.iter().map(|&s| u64::from(s)).sum();
        let mean = sum / t.samples.len() as u64;
        t.samples.sort_unstable();
        // Nearest rank: the smallest sample with at least 99% of the samples at or below it.
        let rank = (t.samples.len() * 99).div_ceil(100).max(1) - 1;
        (mean, u64::from(t.samples[rank]))
    };
    println!(
        "vireo-bench: job={} bs={} qd={} layout={} irq={} ios={} ns={} planned_ns={} bytes={} kicks={} irqs={} waits={} missed={} renotified={} lat_mean_ns={} lat_p99_ns={} lat_max_ns={}",
        args.kind.name(),
        args.bs,
        args.qd,
        if info.packed { "packed" } else { "split" },
        if info.interrupts { "msix" } else { "polled" },
        t.ios,
        t.elapsed.as_nanos(),
        planned.as_nanos(),
        t.bytes,
        after.kicks - before.kicks,
        after.interrupts - before.interrupts,
        after.interrupts_waited - before.interrupts_waited,
        after.missed_wakeups - before.missed_wakeups,
        after.renotified - before.renotified,
        mean,
        p99,
        t.max_ns,
    );
}
