//! Data-parallel training across processes: the [`Communicator`] the trainer talks to, and the
//! bucketed gradient averaging it runs after backward and before clipping.
//!
//! Every rank holds the whole model. Each step every rank draws the same tasks and the same
//! global batch of `size × batch_size` sequences from identically seeded streams and keeps its
//! own slice ([`shard`]); after backward the gradients are flattened into buckets of about
//! [`DEFAULT_BUCKET_BYTES`], one all-reduce per bucket, and divided by the number of ranks
//! ([`average_gradients`]). So `N` ranks with batch `B` take the same steps as one rank with
//! batch `N·B`, up to floating-point rounding.
//!
//! The MPI implementation ([`MpiCommunicator`], behind the `mpi` feature) is one of possibly
//! several; the trainer only needs the trait, and the tests use an in-process one.
use crate::error::{Error, Result};
use std::rc::Rc;
use tch::{Device, Kind, Tensor};

/// Gradient bytes per all-reduce (as f32), the bucket size PyTorch DDP uses by default.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Collective operations across the ranks of one training job. Every rank must call the same
/// operations in the same order with buffers of the same length.
pub trait Communicator: std::fmt::Debug {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Replaces `buf` on every rank by its element-wise sum over all ranks.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Replaces `buf` on every rank by its element-wise sum over all ranks.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Replaces `buf` on every rank by its value on `root`.
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;
}

/// How a training run is distributed: the communicator and the gradient bucket size.
#[derive(Debug, Clone)]
pub struct Distributed {
    /// The ranks of this job.
    pub comm: Rc<dyn Communicator>,
    /// Bytes of f32 gradients per all-reduce (at least one tensor per bucket).
    pub bucket_bytes: usize,
}

impl Distributed {
    /// A job on `comm` with [`DEFAULT_BUCKET_BYTES`] buckets.
    pub fn new(comm: Rc<dyn Communicator>) -> Self {
        Distributed {
            comm,
            bucket_bytes: DEFAULT_BUCKET_BYTES,
        }
    }

    /// Whether this rank writes checkpoints, logs and reports (rank 0).
    pub fn is_writer(&self) -> bool {
        self.comm.rank() == 0
    }
}

/// The slice `start..end` of a global group of `n` sequences that `rank` of `size` trains on:
/// contiguous, in rank order, sizes differing by at most one.
pub fn shard(n: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let size = size.max(1);
    (n * rank / size)..(n * (rank + 1) / size)
}

/// What one averaging did (for tests and throughput figures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReduceStats {
    /// All-reduces of gradient buckets (the small one for the "defined" flags not counted).
    pub buckets: usize,
    /// Gradient elements averaged.
    pub elements: usize,
}

/// Averages `slots` across ranks in place, in buckets of about `bucket_bytes` of f32.
/// `like[i]` gives the shape, kind and device of `slots[i]`: a slot undefined here but defined
/// on some other rank (a head this rank's shard did not touch) becomes zeros first, so every
/// rank ends with the same set of defined slots. Slots undefined on every rank stay undefined.
pub fn average_tensors(
    comm: &dyn Communicator,
    slots: &mut [Tensor],
    like: &[Tensor],
    bucket_bytes: usize,
) -> Result<ReduceStats> {
    if slots.len() != like.len() {
        return Err(Error::Invalid(format!(
            "average_tensors: {} slots for {} tensors",
            slots.len(),
            like.len()
        )));
    }
    let mut stats = ReduceStats::default();
    let size = comm.size();
    if size <= 1 {
        return Ok(stats);
    }
    let mut flags: Vec<f32> = slots
        .iter()
        .map(|s| if s.defined() { 1.0 } else { 0.0 })
        .collect();
    comm.all_reduce_sum_f32(&mut flags)?;
    for ((slot, l), &f) in slots.iter_mut().zip(like).zip(&flags) {
        if f > 0.0 && !slot.defined() {
            *slot = Tensor::zeros(l.size(), (l.kind(), l.device()));
        }
    }
    let live: Vec<usize> = (0..slots.len()).filter(|&i| flags[i] > 0.0).collect();
    let per_bucket = (bucket_bytes / 4).max(1);
    let scale = 1.0 / size as f32;
    let mut start = 0;
    while start < live.len() {
        // Consecutive tensors up to the bucket size; a larger tensor travels alone.
        let mut end = start;
        let mut elems = 0usize;
        while end < live.len() {
            let n = slots[live[end]].numel();
            if end > start && elems + n > per_bucket {
                break;
            }
            elems += n;
            end += 1;
        }
        let members = &live[start..end];
        let mut buf: Vec<f32> = Vec::with_capacity(elems);
        tch::no_grad(|| -> Result<()> {
            for &i in members {
                let flat = slots[i]
                    .detach()
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float)
                    .contiguous()
                    .view([-1]);
                let v = Vec::<f32>::try_from(&flat)?;
                buf.extend_from_slice(&v);
            }
            Ok(())
        })?;
        comm.all_reduce_sum_f32(&mut buf)?;
        for x in &mut buf {
            *x *= scale;
        }
        let mut at = 0;
        tch::no_grad(|| {
            for &i in members {
                let n = slots[i].numel();
                let src = Tensor::from_slice(&buf[at..at + n]).view(slots[i].size().as_slice());
                slots[i].copy_(&src);
                at += n;
            }
        });
        stats.buckets += 1;
        stats.elements += elems;
        start = end;
    }
    Ok(stats)
}

/// Averages the gradients of `vars` across ranks (see [`average_tensors`]); a variable whose
/// gradient is undefined here but defined on another rank gets one.
pub fn average_gradients(
    comm: &dyn Communicator,
    vars: &[Tensor],
    bucket_bytes: usize,
) -> Result<ReduceStats> {
    let mut grads: Vec<Tensor> = vars.iter().map(Tensor::grad).collect();
    let had: Vec<bool> = grads.iter().map(Tensor::defined).collect();
    let stats = average_tensors(comm, &mut grads, vars, bucket_bytes)?;
    let missing: Vec<usize> = (0..vars.len())
        .filter(|&i| !had[i] && grads[i].defined())
        .collect();
    set_gradients(vars, &grads, &missing);
    Ok(stats)
}

/// Makes `vars[i].grad()` equal `values[i]` for each `i` in `which`, creating the gradient
/// where it is undefined.
pub(crate) fn set_gradients(vars: &[Tensor], values: &[Tensor], which: &[usize]) {
    let absent: Vec<&Tensor> = which
        .iter()
        .map(|&i| &vars[i])
        .filter(|v| !v.grad().defined())
        .collect();
    if !absent.is_empty() {
        // libtorch creates a gradient only through backward: one of zeros.
        let zero: Vec<Tensor> = absent.iter().map(|v| (*v * 0.0).sum(Kind::Float)).collect();
        Tensor::stack(&zero, 0).sum(Kind::Float).backward();
    }
    tch::no_grad(|| {
        for &i in which {
            vars[i].grad().copy_(&values[i]);
        }
    });
}

#[cfg(feature = "mpi")]
pub use self::mpi_impl::MpiCommunicator;

#[cfg(feature = "mpi")]
mod mpi_impl {
    use super::Communicator;
    use crate::error::Result;
    use mpi::collective::SystemOperation;
    use mpi::traits::{Communicator as _, CommunicatorCollectives as _, Root as _};

    /// The ranks started by `mpirun` (MPI's world communicator). Creating it initializes MPI;
    /// dropping it finalizes MPI, so keep it alive until training is done.
    pub struct MpiCommunicator {
        world: mpi::topology::SimpleCommunicator,
        // Declared last: dropped (MPI_Finalize) after the communicator.
        _universe: mpi::environment::Universe,
    }

    impl std::fmt::Debug for MpiCommunicator {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "MpiCommunicator(rank {} of {})",
                self.rank(),
                self.size()
            )
        }
    }

    impl MpiCommunicator {
        /// Initializes MPI; `None` when it was already initialized in this process.
        pub fn init() -> Option<Self> {
            let universe = mpi::initialize()?;
            Some(MpiCommunicator {
                world: universe.world(),
                _universe: universe,
            })
        }

        /// This rank's index among the ranks on the same host (`OMPI_COMM_WORLD_LOCAL_RANK`
        /// from Open MPI, `MPI_LOCALRANKID` from MPICH), and the number of ranks on the host;
        /// `(0, 1)` when the launcher does not say.
        pub fn local_rank_and_size(&self) -> (usize, usize) {
            let var = |names: &[&str]| {
                names
                    .iter()
                    .find_map(|n| std::env::var(n).ok()?.parse::<usize>().ok())
            };
            let rank = var(&["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"]).unwrap_or(0);
            let size = var(&["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]).unwrap_or(1);
            (rank, size.max(1))
        }

        /// Ends every rank of the job with `code` (MPI_Abort): for errors on one rank, which
        /// would otherwise leave the others waiting in a collective forever.
        pub fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
    }

    impl Communicator for MpiCommunicator {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }

        fn size(&self) -> usize {
            self.world.size() as usize
        }

        fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
            let send = buf.to_vec();
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
            Ok(())
        }

        fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
            let send = buf.to_vec();
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
            Ok(())
        }

        fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()> {
            self.world.process_at_rank(root as i32).broadcast_into(buf);
            Ok(())
        }

        fn barrier(&self) -> Result<()> {
            self.world.barrier();
            Ok(())
        }
    }
}

/// An in-process job of several ranks, one per thread, for tests of code that takes a
/// [`Communicator`] without starting MPI.
#[cfg(test)]
pub(crate) mod local {
    use super::Communicator;
    use crate::error::Result;
    use std::sync::{Arc, Barrier, Mutex};

    struct Shared {
        barrier: Barrier,
        slots: Mutex<Vec<Vec<f64>>>,
    }

    /// One rank of an in-process job.
    pub(crate) struct LocalCommunicator {
        rank: usize,
        shared: Arc<Shared>,
    }

    impl std::fmt::Debug for LocalCommunicator {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "LocalCommunicator({} of {})", self.rank, self.size())
        }
    }

    impl LocalCommunicator {
        /// `size` connected ranks; hand one to each thread.
        pub(crate) fn group(size: usize) -> Vec<LocalCommunicator> {
            let shared = Arc::new(Shared {
                barrier: Barrier::new(size),
                slots: Mutex::new(vec![Vec::new(); size]),
            });
            (0..size)
                .map(|rank| LocalCommunicator {
                    rank,
                    shared: shared.clone(),
                })
                .collect()
        }

        /// Every rank posts `mine`; each gets everyone's, in rank order.
        fn exchange(&self, mine: Vec<f64>) -> Vec<Vec<f64>> {
            self.shared.barrier.wait();
            self.shared.slots.lock().unwrap()[self.rank] = mine;
            self.shared.barrier.wait();
            let all = self.shared.slots.lock().unwrap().clone();
            self.shared.barrier.wait();
            all
        }
    }

    impl Communicator for LocalCommunicator {
        fn rank(&self) -> usize {
            self.rank
        }

        fn size(&self) -> usize {
            self.shared.slots.lock().unwrap().len()
        }

        fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
            let all = self.exchange(buf.iter().map(|&x| x as f64).collect());
            for (i, x) in buf.iter_mut().enumerate() {
                *x = all.iter().map(|v| v[i] as f32).sum();
            }
            Ok(())
        }

        fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
            let all = self.exchange(buf.to_vec());
            for (i, x) in buf.iter_mut().enumerate() {
                *x = all.iter().map(|v| v[i]).sum();
            }
            Ok(())
        }

        fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()> {
            let all = self.exchange(buf.to_vec());
            buf.copy_from_slice(&all[root]);
            Ok(())
        }

        fn barrier(&self) -> Result<()> {
            self.shared.barrier.wait();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::local::LocalCommunicator;
    use super::*;

    /// Runs `f(rank, comm)` on one thread per rank and returns the results in rank order.
    fn on_ranks<T: Send>(size: usize, f: impl Fn(usize, &dyn Communicator) -> T + Sync) -> Vec<T> {
        let comms = LocalCommunicator::group(size);
        std::thread::scope(|s| {
            let handles: Vec<_> = comms
                .into_iter()
                .enumerate()
                .map(|(r, c)| {
                    let f = &f;
                    s.spawn(move || f(r, &c))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn shards_cover_the_batch_in_order_without_overlap() {
        for n in 0..20 {
            for size in 1..5 {
                let parts: Vec<_> = (0..size).map(|r| shard(n, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, n);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
            }
        }
    }

    #[test]
    fn averages_across_ranks_bucket_by_bucket() {
        // Three tensors of 6, 4 and 10 elements; a 32-byte bucket (8 floats) puts each in
        // its own bucket, except that the 10-element one is larger than a bucket.
        let results = on_ranks(2, |r, comm| {
            let base = (r as f32 + 1.0) * 10.0;
            let like = [
                Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
                Tensor::zeros([4], (Kind::Float, Device::Cpu)),
                Tensor::zeros([10], (Kind::Float, Device::Cpu)),
            ];
            let mut slots: Vec<Tensor> = like
                .iter()
                .map(|l| Tensor::ones(l.size(), (Kind::Float, Device::Cpu)) * base as f64)
                .collect();
            let small = average_tensors(comm, &mut slots, &like, 32).unwrap();
            let mut slots2: Vec<Tensor> = like
                .iter()
                .map(|l| Tensor::ones(l.size(), (Kind::Float, Device::Cpu)) * base as f64)
                .collect();
            let big = average_tensors(comm, &mut slots2, &like, DEFAULT_BUCKET_BYTES).unwrap();
            let values: Vec<Vec<f32>> = slots
                .iter()
                .chain(&slots2)
                .map(|t| Vec::<f32>::try_from(&t.view([-1])).unwrap())
                .collect();
            (small, big, values, slots[0].size())
        });
        for (small, big, values, shape) in results {
            assert_eq!(small.buckets, 3, "6+4 > 8, and 10 > 8 travels alone");
            assert_eq!(small.elements, 20);
            assert_eq!(big.buckets, 1);
            assert_eq!(shape, vec![2, 3]);
            for v in values {
                assert!(v.iter().all(|&x| x == 15.0), "mean of 10 and 20: {v:?}");
            }
        }
    }

    #[test]
    fn a_slot_defined_on_one_rank_becomes_defined_on_all() {
        let results = on_ranks(2, |r, comm| {
            let like = [
                Tensor::zeros([3], (Kind::Float, Device::Cpu)),
                Tensor::zeros([2], (Kind::Float, Device::Cpu)),
            ];
            // Slot 0: only rank 1 has it; slot 1: nobody.
            let mut slots = vec![
                if r == 1 {
                    Tensor::from_slice(&[2.0f32, 4.0, 6.0])
                } else {
                    Tensor::new()
                },
                Tensor::new(),
            ];
            average_tensors(comm, &mut slots, &like, DEFAULT_BUCKET_BYTES).unwrap();
            (Vec::<f32>::try_from(&slots[0]).unwrap(), slots[1].defined())
        });
        for (v, second) in results {
            assert_eq!(v, vec![1.0, 2.0, 3.0]);
            assert!(!second);
        }
    }

    #[test]
    fn gradients_are_averaged_and_created_where_missing() {
        let results = on_ranks(2, |r, comm| {
            let a = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
            let b = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
            // Rank 0 touches only `a` (loss 2·Σa → grad 2); rank 1 both (loss 4·Σa + Σb).
            let loss = if r == 0 {
                a.sum(Kind::Float) * 2.0
            } else {
                a.sum(Kind::Float) * 4.0 + b.sum(Kind::Float)
            };
            loss.backward();
            let vars = [a.shallow_clone(), b.shallow_clone()];
            average_gradients(comm, &vars, DEFAULT_BUCKET_BYTES).unwrap();
            (
                Vec::<f32>::try_from(&a.grad()).unwrap(),
                Vec::<f32>::try_from(&b.grad()).unwrap(),
            )
        });
        for (ga, gb) in results {
            assert_eq!(ga, vec![3.0, 3.0]);
            assert_eq!(gb, vec![0.5]);
        }
    }

    #[test]
    fn one_rank_leaves_gradients_alone() {
        let comms = LocalCommunicator::group(1);
        let a = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        (a.sum(Kind::Float) * 3.0).backward();
        let s = average_gradients(&comms[0], &[a.shallow_clone()], 4).unwrap();
        assert_eq!(s, ReduceStats::default());
        assert_eq!(Vec::<f32>::try_from(&a.grad()).unwrap(), vec![3.0]);
    }
}
