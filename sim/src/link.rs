//! The WLAN link model: one direction of a link with Linux netem semantics
//! (`tc-netem(8)`, `shared/wlan-presets.md`): delay and jitter, Gilbert-Elliott loss, reorder
//! (gap), duplication, rate with per-packet overhead, slot batching, power-save wake windows and
//! stalls. Pure and seeded: [`Link::enqueue`], [`Link::next_delivery`], [`Link::deliver_due`].

use std::collections::{BinaryHeap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use smoltcp::time::{Duration, Instant};

/// Jitter distribution (netem `distribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JitterDist {
    /// Uniform in `[-jitter, +jitter]` (netem's default without a table).
    #[default]
    Uniform,
    /// Normal with standard deviation `jitter`.
    Normal,
    /// Pareto (shape 3) normalised to mean 0 and standard deviation `jitter`: a heavy right tail.
    Pareto,
    /// netem's paretonormal: 1/4 normal plus 3/4 pareto.
    Paretonormal,
}

/// Parameters of one link direction. Every field can be overridden in a scenario or with
/// `--set link.FIELD=VALUE`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkParams {
    /// One-way delay. Range: 0..=10000000 (10 s).
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 10000000>")]
    pub delay_us: u64,
    /// Jitter (netem's second delay argument; standard deviation for normal/pareto). Range: 0..=10000000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 10000000>")]
    pub jitter_us: u64,
    /// Jitter distribution.
    pub jitter_dist: JitterDist,
    /// Gilbert-Elliott p: probability of moving from the good to the bad state, per packet. Range: 0..=1.
    #[serde(deserialize_with = "probability")]
    pub loss_p: f64,
    /// Gilbert-Elliott r: probability of moving from the bad to the good state, per packet and
    /// per `loss_r_step_us` of time between packets (whichever gives more chances). Range: 0..=1.
    #[serde(deserialize_with = "probability")]
    pub loss_r: f64,
    /// Time that counts as one more chance to leave the bad state when packets are further
    /// apart: a fade lasts a bounded time, not a number of packets (`docs/link-model.md`).
    /// 0 moves the chain per packet only, as netem's gemodel does. Range: 0..=60000000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 60000000>")]
    pub loss_r_step_us: u64,
    /// Gilbert-Elliott 1-h: loss probability in the bad state. Range: 0..=1.
    #[serde(deserialize_with = "probability")]
    pub loss_in_bad: f64,
    /// Gilbert-Elliott 1-k: loss probability in the good state. Range: 0..=1.
    #[serde(deserialize_with = "probability")]
    pub loss_in_good: f64,
    /// Probability that a packet is sent at once, ahead of the queue (netem reorder). Range: 0..=1.
    #[serde(deserialize_with = "probability")]
    pub reorder: f64,
    /// Probability that a packet is duplicated. Range: 0..=1.
    #[serde(deserialize_with = "probability")]
    pub duplicate: f64,
    /// Link rate; 0 means unlimited. Range: 0..=100000000000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 100000000000>")]
    pub rate_bps: u64,
    /// Bytes added to each packet for the rate (802.11 MAC/PHY overhead). Range: 0..=65535.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 65535>")]
    pub overhead_bytes: u64,
    /// Slot batching: packets leave only at slot boundaries, one slot every
    /// `slot_min_us..=slot_max_us`; 0 disables. Range: 0..=10000000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 10000000>")]
    pub slot_min_us: u64,
    /// Upper bound of the slot interval. Range: 0..=10000000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 10000000>")]
    pub slot_max_us: u64,
    /// Packets per slot at most (0: no limit). Range: 0..=1000000.
    #[serde(deserialize_with = "firmware_core::range::u32_in::<_, 0, 1000000>")]
    pub slot_packets: u32,
    /// Power save (towards the device only): the receiver wakes every `power_save_interval_us`
    /// and after each of its own transmissions, and stays awake `power_save_awake_us`;
    /// packets arriving while it sleeps wait for the next wake. 0 disables. Range: 0..=10000000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 10000000>")]
    pub power_save_interval_us: u64,
    /// How long the receiver stays awake after a wake. Range: 0..=10000000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 10000000>")]
    pub power_save_awake_us: u64,
    /// A stall every `stall_every_ms` (0: never) during which nothing is delivered. Range: 0..=86400000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 86400000>")]
    pub stall_every_ms: u64,
    /// Length of each stall. Range: 0..=86400000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 86400000>")]
    pub stall_ms: u64,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams::IDEAL
    }
}

impl LinkParams {
    /// The least time any packet can spend on this link: the lower bound of delay plus jitter
    /// (unbounded jitter distributions reach 0), plus the airtime of the smallest IPv4 packet
    /// (a 20-byte header) at `rate_bps`. Power save, slots and stalls only add to it. This is
    /// the lookahead of a conservative parallel simulation: a packet sent now cannot arrive
    /// sooner (see the turmoil backend's tick).
    pub fn min_one_way_delay_us(&self) -> u64 {
        const SMALLEST_PACKET_BYTES: u64 = 20;
        let sd = self.jitter_us as f64;
        let jitter_floor = match self.jitter_dist {
            _ if sd == 0.0 => 0.0,
            JitterDist::Uniform => -sd,
            // The normalised Pareto draw (shape 3) is never below (1 - 1.5) / sqrt(0.75).
            JitterDist::Pareto => -0.5 / 0.75f64.sqrt() * sd,
            JitterDist::Normal | JitterDist::Paretonormal => f64::NEG_INFINITY,
        };
        let base_us = if self.reorder > 0.0 {
            0.0 // a reordered packet skips the delay
        } else {
            (self.delay_us as f64 + jitter_floor).max(0.0)
        };
        let airtime_us = match self.rate_bps {
            0 => 0,
            rate => (SMALLEST_PACKET_BYTES + self.overhead_bytes) * 8 * 1_000_000 / rate,
        };
        base_us.floor() as u64 + airtime_us
    }

    /// No delay, no loss, no limits.
    pub const IDEAL: LinkParams = LinkParams {
        delay_us: 0,
        jitter_us: 0,
        jitter_dist: JitterDist::Uniform,
        loss_p: 0.0,
        loss_r: 1.0,
        // The coherence time of a 2.4 GHz channel at walking speed (docs/link-model.md).
        loss_r_step_us: 50_000,
        loss_in_bad: 1.0,
        loss_in_good: 0.0,
        reorder: 0.0,
        duplicate: 0.0,
        rate_bps: 0,
        overhead_bytes: 0,
        slot_min_us: 0,
        slot_max_us: 0,
        slot_packets: 0,
        power_save_interval_us: 0,
        power_save_awake_us: 0,
        stall_every_ms: 0,
        stall_ms: 0,
    };

    /// The preset names, in order of harshness.
    pub const PRESETS: [&'static str; 4] = ["ideal", "wlan-good", "wlan-busy", "wlan-bad"];

    /// The rules between fields that single ranges cannot say: `(field, why)` when broken.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.slot_min_us > self.slot_max_us {
            return Err(("slot_min_us", "must not exceed slot_max_us".into()));
        }
        if self.stall_every_ms > 0 && self.stall_ms >= self.stall_every_ms {
            return Err(("stall_ms", "must be shorter than stall_every_ms".into()));
        }
        if self.power_save_interval_us > 0 && self.power_save_awake_us == 0 {
            return Err((
                "power_save_awake_us",
                "must be at least 1 when power_save_interval_us is set".into(),
            ));
        }
        Ok(())
    }
}

/// The link presets of `shared/wlan-presets.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// No delay, no loss, no limits.
    #[default]
    Ideal,
    /// A quiet home WLAN.
    WlanGood,
    /// A busy WLAN: bursts, power save, batching.
    WlanBusy,
    /// A bad WLAN: heavy loss and jitter.
    WlanBad,
}

impl Preset {
    /// Every preset, in order of harshness.
    pub const ALL: [Preset; 4] = [
        Preset::Ideal,
        Preset::WlanGood,
        Preset::WlanBusy,
        Preset::WlanBad,
    ];

    /// The name used in files and on the command line.
    pub fn name(self) -> &'static str {
        LinkParams::PRESETS[self as usize]
    }

    /// The preset called `name`.
    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The parameters toward the device (`downlink`) or away from it.
    pub fn params(self, downlink: bool) -> LinkParams {
        let ideal = LinkParams::IDEAL;
        match self {
            Preset::Ideal => ideal,
            Preset::WlanGood => LinkParams {
                delay_us: 1_500,
                jitter_us: 500,
                jitter_dist: JitterDist::Normal,
                loss_p: 0.001,
                loss_r: 0.5,
                rate_bps: 8_000_000,
                overhead_bytes: 50,
                ..ideal
            },
            Preset::WlanBusy => LinkParams {
                delay_us: 3_000,
                jitter_us: 4_000,
                jitter_dist: JitterDist::Paretonormal,
                loss_p: 0.005,
                loss_r: 0.5,
                rate_bps: 4_000_000,
                overhead_bytes: 50,
                slot_min_us: if downlink { 1_000 } else { 0 },
                slot_max_us: if downlink { 6_000 } else { 0 },
                slot_packets: if downlink { 16 } else { 0 },
                power_save_interval_us: if downlink { 102_400 } else { 0 },
                power_save_awake_us: if downlink { 10_000 } else { 0 },
                stall_every_ms: 120_000,
                stall_ms: 100,
                ..ideal
            },
            Preset::WlanBad => LinkParams {
                delay_us: 5_000,
                jitter_us: 10_000,
                jitter_dist: JitterDist::Pareto,
                loss_p: 0.025,
                loss_r: 0.4,
                reorder: 0.001,
                duplicate: 0.0005,
                rate_bps: 1_000_000,
                overhead_bytes: 50,
                power_save_interval_us: if downlink { 409_600 } else { 0 },
                power_save_awake_us: if downlink { 10_000 } else { 0 },
                stall_every_ms: 60_000,
                stall_ms: 100,
                ..ideal
            },
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Deserialises a probability (`0..=1`).
fn probability<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format_args!(
            "{v} is out of range: a probability is in 0..=1"
        )))
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Queued {
    send_at: Instant,
    order: u64,
    packet: Vec<u8>,
}

impl Ord for Queued {
    // Min-heap on (send time, arrival order), as netem's tfifo.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.send_at, other.order).cmp(&(self.send_at, self.order))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Queued {
    fn key(&self) -> (Instant, u64) {
        (self.send_at, self.order)
    }
}

/// Packets in flight in (send time, arrival order) order: a FIFO for the common in-order case,
/// a heap for packets that jitter or reordering put ahead of earlier ones.
#[derive(Debug, Default)]
struct FlightQueue {
    in_order: VecDeque<Queued>,
    out_of_order: BinaryHeap<Queued>,
}

impl FlightQueue {
    fn push(&mut self, q: Queued) {
        if self.in_order.back().is_none_or(|b| b.key() <= q.key()) {
            self.in_order.push_back(q);
        } else {
            self.out_of_order.push(q);
        }
    }

    fn peek(&self) -> Option<&Queued> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(b)) => Some(if a.key() <= b.key() { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    fn pop(&mut self) -> Option<Queued> {
        let from_fifo = match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(b)) => a.key() <= b.key(),
            (a, _) => a.is_some(),
        };
        if from_fifo {
            self.in_order.pop_front()
        } else {
            self.out_of_order.pop()
        }
    }

    fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }
}

/// What the link did with one packet it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It leaves the link at `at` (twice when `duplicated`; ahead of the queue when
    /// `reordered`).
    Sent {
        /// When it leaves the link (the receiver may still be asleep or stalled then).
        at: Instant,
        /// The link sends it twice.
        duplicated: bool,
        /// It skipped the delay, ahead of earlier packets.
        reordered: bool,
    },
    /// The link dropped it.
    Lost(LossCause),
}

impl Fate {
    /// When it leaves the link, unless it was lost.
    pub fn sent_at(self) -> Option<Instant> {
        match self {
            Fate::Sent { at, .. } => Some(at),
            Fate::Lost(_) => None,
        }
    }
}

/// Why the link dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossCause {
    /// Gilbert-Elliott loss in the bad state (`loss_in_bad`): a fade, a loss burst.
    BadState,
    /// Gilbert-Elliott loss in the good state (`loss_in_good`): an isolated loss.
    GoodState,
}

impl std::fmt::Display for LossCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossCause::BadState => "Gilbert-Elliott bad state",
            LossCause::GoodState => "Gilbert-Elliott good state",
        })
    }
}

/// Counters of what a link did, for statistics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Packets offered to the link.
    pub enqueued: u64,
    /// Packets the link dropped (Gilbert-Elliott loss).
    pub lost: u64,
    /// Packets the link sent twice.
    pub duplicated: u64,
    /// Packets sent without the delay, ahead of earlier ones.
    pub reordered: u64,
    /// Packets handed to the receiver (duplicates counted each time).
    pub delivered: u64,
    /// Packets that reached the receiver's backend after their link-model arrival time (the
    /// turmoil backend at a tick above the link's minimum one-way delay); 0 means exact.
    pub late: u64,
}

/// One direction of a link.
#[derive(Debug)]
pub struct Link {
    params: LinkParams,
    /// Slot timing draws, apart from the per-packet draws in `rng`: the turmoil backend
    /// learns of a packet before its send time (when the sender's step ran first), so the two
    /// kinds of draw interleave differently there and must not share a stream.
    slot_rng: ChaCha8Rng,
    /// The liveness phase: packets sent after this time see `healed` instead of `params`.
    healed_from: Option<Instant>,
    healed: LinkParams,
    rng: ChaCha8Rng,
    queue: FlightQueue,
    order: u64,
    in_bad_state: bool,
    /// Send time of the previous packet (the loss chain's clock).
    last_packet_at: Option<Instant>,
    /// When the rate limiter is next free.
    rate_free_at: Instant,
    /// Last send time given, so rate-limited packets stay in order.
    last_send_at: Instant,
    next_slot_at: Option<Instant>,
    /// The receiver was last woken by its own transmission at this time.
    awake_since_tx: Option<Instant>,
    power_save_phase_us: u64,
    stall_phase_ms: u64,
    stats: LinkStats,
}

impl Link {
    /// A link direction with its own seed.
    pub fn new(params: LinkParams, seed: u64) -> Link {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let power_save_phase_us = if params.power_save_interval_us > 0 {
            rng.random_range(0..params.power_save_interval_us)
        } else {
            0
        };
        let stall_phase_ms = if params.stall_every_ms > 0 {
            rng.random_range(0..params.stall_every_ms)
        } else {
            0
        };
        Link {
            params,
            slot_rng: ChaCha8Rng::seed_from_u64(crate::seed::split_seed(seed, "slots")),
            healed_from: None,
            healed: params,
            rng,
            queue: FlightQueue::default(),
            order: 0,
            in_bad_state: false,
            last_packet_at: None,
            rate_free_at: Instant::ZERO,
            last_send_at: Instant::ZERO,
            next_slot_at: None,
            awake_since_tx: None,
            power_save_phase_us,
            stall_phase_ms,
            stats: LinkStats::default(),
        }
    }

    /// The parameters.
    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    /// What the link did so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Liveness phase: packets sent after `at` are lost, duplicated, reordered, stalled and
    /// put to sleep no more (delay, jitter and rate stay), so every retransmission gets
    /// through. Keyed by send time, not by call time, so a backend that learns of the phase
    /// change late (turmoil, one step later) treats every packet as one that learned at once.
    pub fn heal_from(&mut self, at: Instant) {
        if self.healed_from.is_some() {
            return;
        }
        self.healed_from = Some(at);
        self.healed = LinkParams {
            loss_p: 0.0,
            loss_in_good: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            stall_every_ms: 0,
            power_save_interval_us: 0,
            ..self.params
        };
    }

    /// The parameters for a packet sent, or a delivery, at `t`.
    fn params_at(&self, t: Instant) -> &LinkParams {
        match self.healed_from {
            Some(h) if t > h => &self.healed,
            _ => &self.params,
        }
    }

    /// The receiver of this direction transmitted at `now` (wakes it from power save).
    pub fn receiver_transmitted(&mut self, now: Instant) {
        self.awake_since_tx = Some(now);
    }

    /// The Gilbert-Elliott chain for a packet sent at `now`. Unlike netem's gemodel, which
    /// moves once per packet, the bad state also ends with time: `n` steps of `loss_r_step_us`
    /// since the previous packet give `n` chances (one draw, with `1 - (1 - r)^n`), so a
    /// connection reduced to one retransmission a second is not held in a fade for tens of
    /// seconds. Packets closer together than one step see netem's chain unchanged.
    fn gilbert_elliott_loss(&mut self, p: &LinkParams, now: Instant) -> bool {
        let gap_us = self
            .last_packet_at
            .map_or(0, |last| (now - last.min(now)).total_micros());
        self.last_packet_at = Some(self.last_packet_at.map_or(now, |last| last.max(now)));
        // No draw when the transition cannot happen (ideal links stay cheap).
        if self.in_bad_state {
            let r = p.loss_r.clamp(0.0, 1.0);
            let steps = match p.loss_r_step_us {
                0 => 1.0,
                step => (gap_us as f64 / step as f64).max(1.0),
            };
            let leave = 1.0 - (1.0 - r).powf(steps);
            if self.rng.random_bool(leave.clamp(0.0, 1.0)) {
                self.in_bad_state = false;
            }
        } else if p.loss_p > 0.0 && self.rng.random_bool(p.loss_p.clamp(0.0, 1.0)) {
            self.in_bad_state = true;
        }
        let loss = if self.in_bad_state {
            p.loss_in_bad
        } else {
            p.loss_in_good
        };
        loss > 0.0 && self.rng.random_bool(loss.clamp(0.0, 1.0))
    }

    fn jitter_us(&mut self, p: &LinkParams) -> f64 {
        let sd = p.jitter_us as f64;
        if sd == 0.0 {
            return 0.0;
        }
        let normal = |rng: &mut ChaCha8Rng| -> f64 { StandardNormal.sample(rng) };
        // Pareto, shape 3, scale 1: mean 1.5, sd sqrt(0.75); normalised to mean 0, sd 1.
        let pareto = |rng: &mut ChaCha8Rng| -> f64 {
            let u: f64 = rng.random_range(f64::EPSILON..1.0);
            (u.powf(-1.0 / 3.0) - 1.5) / 0.75f64.sqrt()
        };
        let z = match p.jitter_dist {
            JitterDist::Uniform => self.rng.random_range(-1.0..=1.0),
            JitterDist::Normal => normal(&mut self.rng),
            JitterDist::Pareto => pareto(&mut self.rng),
            JitterDist::Paretonormal => 0.25 * normal(&mut self.rng) + 0.75 * pareto(&mut self.rng),
        };
        z * sd
    }

    /// Takes a packet sent at `now`; says what the link does with it.
    pub fn enqueue(&mut self, now: Instant, packet: Vec<u8>) -> Fate {
        self.enqueue_at(now, packet)
    }

    /// Takes a packet sent at `sent_at` that reached the receiver's backend at `received_at`
    /// (the turmoil backend: at the start of the step after it was sent); counts it as late
    /// when the link model would have delivered it earlier. Says what the link does with it.
    pub fn enqueue_received(
        &mut self,
        sent_at: Instant,
        packet: Vec<u8>,
        received_at: Instant,
    ) -> Fate {
        let fate = self.enqueue_at(sent_at, packet);
        if fate.sent_at().is_some_and(|at| at < received_at) {
            self.stats.late += 1;
        }
        fate
    }

    /// Takes a packet at `now`; says when it leaves the link, or why it was lost.
    fn enqueue_at(&mut self, now: Instant, packet: Vec<u8>) -> Fate {
        self.stats.enqueued += 1;
        let p = *self.params_at(now);
        if self.healed_from.is_some_and(|h| now > h) {
            self.in_bad_state = false;
        }
        if self.gilbert_elliott_loss(&p, now) {
            self.stats.lost += 1;
            return Fate::Lost(match self.in_bad_state {
                true => LossCause::BadState,
                false => LossCause::GoodState,
            });
        }
        let copies = if p.duplicate > 0.0 && self.rng.random_bool(p.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let reorder = p.reorder > 0.0 && self.rng.random_bool(p.reorder);
        // Every packet takes its own airtime, even one sent ahead of the queue.
        let bits = (packet.len() as u64 + p.overhead_bytes) * 8;
        let tx = Duration::from_micros((bits * 1_000_000).checked_div(p.rate_bps).unwrap_or(0));
        let send_at = if reorder {
            self.stats.reordered += 1;
            now + tx
        } else {
            let delay = p.delay_us as f64 + self.jitter_us(&p);
            let arrive = now + Duration::from_micros(delay.max(0.0) as u64);
            // netem: with a rate, each packet is sent after the previous one, plus its
            // serialisation time.
            let send_at = if p.rate_bps > 0 {
                let start = arrive.max(self.rate_free_at).max(self.last_send_at);
                self.rate_free_at = start + tx;
                start + tx
            } else {
                arrive
            };
            self.last_send_at = self.last_send_at.max(send_at);
            send_at
        };
        if copies == 2 {
            self.order += 1;
            self.queue.push(Queued {
                send_at,
                order: self.order,
                packet: packet.clone(),
            });
        }
        self.order += 1;
        self.queue.push(Queued {
            send_at,
            order: self.order,
            packet,
        });
        Fate::Sent {
            at: send_at,
            duplicated: copies == 2,
            reordered: reorder,
        }
    }

    /// The earliest time at or after `t` when the receiver accepts packets (power save, stall).
    fn receivable_at(&self, t: Instant) -> Instant {
        let p = self.params_at(t);
        let mut t = t;
        // A stall window pushes delivery to its end.
        if p.stall_every_ms > 0 && p.stall_ms > 0 {
            let every = p.stall_every_ms * 1000;
            let phase = self.stall_phase_ms * 1000;
            let us = t.total_micros() as u64;
            if us >= phase {
                let into = (us - phase) % every;
                if into < p.stall_ms * 1000 {
                    t += Duration::from_micros(p.stall_ms * 1000 - into);
                }
            }
        }
        let interval = p.power_save_interval_us;
        if interval > 0 {
            let awake = p.power_save_awake_us;
            if let Some(tx) = self.awake_since_tx {
                if t >= tx && t < tx + Duration::from_micros(awake) {
                    return t;
                }
            }
            let us = t.total_micros() as u64;
            let phase = self.power_save_phase_us;
            if us < phase {
                return Instant::from_micros(phase as i64);
            }
            let into = (us - phase) % interval;
            if into >= awake {
                t += Duration::from_micros(interval - into);
            }
        }
        t
    }

    /// When the next packet can be delivered, if any is in flight.
    pub fn next_delivery(&self) -> Option<Instant> {
        let head = self.queue.peek()?.send_at;
        let mut t = self.receivable_at(head);
        if let Some(slot) = self.next_slot_at {
            t = t.max(slot);
        }
        Some(t)
    }

    /// Moves every packet deliverable at `now` into `out`, in delivery order.
    pub fn deliver_due(&mut self, now: Instant, out: &mut impl Extend<Vec<u8>>) {
        let Some(due) = self.next_delivery() else {
            return;
        };
        if due > now {
            return;
        }
        let limit = if self.params.slot_min_us > 0 && self.params.slot_packets > 0 {
            self.params.slot_packets as usize
        } else {
            usize::MAX
        };
        let mut n = 0;
        while n < limit {
            match self.queue.peek() {
                Some(q) if q.send_at <= now && self.receivable_at(q.send_at) <= now => {}
                _ => break,
            }
            if let Some(q) = self.queue.pop() {
                out.extend(std::iter::once(q.packet));
                n += 1;
            }
        }
        self.stats.delivered += n as u64;
        if self.params.slot_min_us > 0 {
            let lo = self.params.slot_min_us;
            let hi = self.params.slot_max_us.max(lo);
            let next = self.slot_rng.random_range(lo..=hi);
            self.next_slot_at = Some(now + Duration::from_micros(next));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        params: LinkParams,
        seed: u64,
        packets: usize,
        gap_us: u64,
    ) -> (Vec<(u64, u32)>, LinkStats) {
        let mut link = Link::new(params, seed);
        let mut got = Vec::new();
        let mut out = Vec::new();
        let mut now = Instant::ZERO;
        for i in 0..packets {
            link.enqueue(now, (i as u32).to_be_bytes().to_vec());
            now += Duration::from_micros(gap_us);
            while let Some(t) = link.next_delivery() {
                if t > now {
                    break;
                }
                link.deliver_due(t.max(Instant::ZERO), &mut out);
                for p in out.drain(..) {
                    got.push((
                        t.total_micros() as u64,
                        u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                    ));
                }
            }
        }
        while let Some(t) = link.next_delivery() {
            link.deliver_due(t, &mut out);
            for p in out.drain(..) {
                got.push((
                    t.total_micros() as u64,
                    u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                ));
            }
        }
        (got, link.stats())
    }

    #[test]
    fn ideal_link_delivers_everything_in_order_at_once() {
        let (got, stats) = run(LinkParams::IDEAL, 1, 1000, 10);
        assert_eq!(got.len(), 1000);
        assert!(got.windows(2).all(|w| w[0].1 < w[1].1));
        assert_eq!(stats.lost, 0);
    }

    #[test]
    fn gilbert_elliott_loss_rate_matches_the_model() {
        // Stationary bad-state share p/(p+r); loss in bad 100%.
        let params = LinkParams {
            loss_p: 0.025,
            loss_r: 0.4,
            ..LinkParams::IDEAL
        };
        let (got, stats) = run(params, 7, 200_000, 10);
        let expected = 0.025 / (0.025 + 0.4);
        let measured = stats.lost as f64 / stats.enqueued as f64;
        assert!(
            (measured - expected).abs() < 0.01,
            "measured {measured}, expected {expected}"
        );
        assert_eq!(got.len() as u64 + stats.lost, 200_000);
    }

    /// The longest run of consecutive packets lost, for one packet every `gap_us`.
    fn longest_loss_run(params: LinkParams, gap_us: i64, packets: i64) -> u64 {
        let mut link = Link::new(params, 11);
        let (mut run, mut longest) = (0, 0);
        for i in 0..packets {
            let lost_before = link.stats().lost;
            link.enqueue(Instant::from_micros(i * gap_us), vec![0; 40]);
            run = if link.stats().lost > lost_before {
                run + 1
            } else {
                0
            };
            longest = longest.max(run);
        }
        longest
    }

    /// A fade is bounded in time: a connection reduced to one packet a second (a sender
    /// backing off its retransmissions) leaves the bad state at the next packet, where netem's
    /// per-packet chain keeps it for as many seconds as it has packets to lose. Dense traffic
    /// sees netem's chain (`gilbert_elliott_loss_rate_matches_the_model`).
    #[test]
    fn a_fade_ends_with_time_when_packets_are_sparse() {
        let params = LinkParams {
            loss_p: 0.05,
            loss_r: 0.5,
            ..LinkParams::IDEAL
        };
        assert_eq!(params.loss_r_step_us, 50_000);
        assert_eq!(longest_loss_run(params, 1_000_000, 10_000), 1);
        let netem = LinkParams {
            loss_r_step_us: 0,
            ..params
        };
        assert!(longest_loss_run(netem, 1_000_000, 10_000) >= 6);
        // Packets a step apart or closer: the same chain as netem's, draw for draw.
        assert_eq!(
            longest_loss_run(params, 50_000, 10_000),
            longest_loss_run(netem, 50_000, 10_000)
        );
    }

    #[test]
    fn normal_jitter_percentiles() {
        let params = LinkParams {
            delay_us: 5_000,
            jitter_us: 1_000,
            jitter_dist: JitterDist::Normal,
            ..LinkParams::IDEAL
        };
        let mut link = Link::new(params, 3);
        let mut delays = Vec::new();
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let mut l2 = Link::new(params, link.rng.random());
            l2.enqueue(Instant::ZERO, vec![0]);
            let t = l2.next_delivery().unwrap();
            l2.deliver_due(t, &mut out);
            delays.push(t.total_micros());
        }
        delays.sort_unstable();
        let p = |q: f64| delays[(q * delays.len() as f64) as usize];
        assert!((p(0.5) - 5_000).abs() < 50, "median {}", p(0.5));
        // 84th percentile of a normal is mean + 1 sd.
        assert!((p(0.8413) - 6_000).abs() < 60, "p84 {}", p(0.8413));
        link.enqueue(Instant::ZERO, vec![1]);
    }

    #[test]
    fn jitter_reorders_and_rate_keeps_order() {
        let jittery = LinkParams {
            delay_us: 3_000,
            jitter_us: 4_000,
            jitter_dist: JitterDist::Paretonormal,
            ..LinkParams::IDEAL
        };
        let (got, _) = run(jittery, 5, 2_000, 200);
        assert!(
            got.windows(2).any(|w| w[0].1 > w[1].1),
            "jitter without rate must reorder"
        );
        let rated = LinkParams {
            rate_bps: 1_000_000,
            ..jittery
        };
        let (got, _) = run(rated, 5, 2_000, 200);
        assert!(
            got.windows(2).all(|w| w[0].1 < w[1].1),
            "rate serialises packets"
        );
    }

    #[test]
    fn rate_limits_throughput() {
        // 1000 packets of 4+46 overhead bytes = 400 bits each at 1 Mbit/s: 400 us each.
        let params = LinkParams {
            rate_bps: 1_000_000,
            overhead_bytes: 46,
            ..LinkParams::IDEAL
        };
        let (got, _) = run(params, 1, 1000, 0);
        let last = got.last().unwrap().0;
        assert_eq!(last, 1000 * 400);
    }

    #[test]
    fn power_save_delivers_only_in_wake_windows() {
        let params = LinkParams {
            power_save_interval_us: 100_000,
            power_save_awake_us: 10_000,
            ..LinkParams::IDEAL
        };
        let link = Link::new(params, 9);
        let phase = link.power_save_phase_us;
        let (got, _) = run(params, 9, 500, 3_000);
        assert_eq!(got.len(), 500);
        for (t, _) in got {
            assert!(
                t >= phase && (t - phase) % 100_000 < 10_000,
                "delivered while asleep at {t}"
            );
        }
    }

    #[test]
    fn slot_batching_releases_bursts() {
        let params = LinkParams {
            slot_min_us: 5_000,
            slot_max_us: 5_000,
            slot_packets: 4,
            ..LinkParams::IDEAL
        };
        let (got, _) = run(params, 2, 100, 100);
        let mut per_time = std::collections::BTreeMap::new();
        for (t, _) in &got {
            *per_time.entry(*t).or_insert(0) += 1;
        }
        assert!(per_time.values().all(|n| *n <= 4));
        assert!(per_time.values().any(|n| *n > 1), "packets are batched");
        assert_eq!(got.len(), 100);
    }

    #[test]
    fn same_seed_same_schedule() {
        let params = Preset::WlanBad.params(true);
        assert_eq!(run(params, 42, 3000, 500), run(params, 42, 3000, 500));
        assert_ne!(run(params, 42, 3000, 500).0, run(params, 43, 3000, 500).0);
    }

    /// The lookahead the turmoil backend's tick relies on: no packet of any size, on any
    /// preset or direction, leaves the link sooner than `min_one_way_delay_us` after it was sent.
    #[test]
    fn no_packet_beats_the_minimum_one_way_delay() {
        for preset in Preset::ALL {
            for downlink in [false, true] {
                let params = preset.params(downlink);
                let min_us = params.min_one_way_delay_us();
                let mut earliest = u64::MAX;
                let mut probe = Link::new(params, 7);
                for i in 0..20_000u64 {
                    let sent = Instant::from_micros((i * 37) as i64);
                    let size = 20 + (i * 7919 % 1481) as usize;
                    if let Some(at) = probe.enqueue_at(sent, vec![0; size]).sent_at() {
                        earliest = earliest.min((at - sent).total_micros());
                    }
                }
                assert!(
                    earliest >= min_us,
                    "{preset} {downlink}: {earliest} < {min_us}"
                );
                if preset != Preset::Ideal {
                    assert!(min_us > 0, "{preset}: a WLAN has airtime");
                }
            }
        }
    }

    /// Healing is keyed by send time: a backend that learns of the liveness phase after some
    /// earlier packets reached the link (turmoil) gets exactly what one that learned at once
    /// (loopback) gets.
    #[test]
    fn healing_depends_on_send_time_not_call_time() {
        let params = Preset::WlanBad.params(true);
        let heal_at = Instant::from_micros(50_000);
        let sent = |i: u64| Instant::from_micros((i * 100) as i64);
        let mut at_once = Link::new(params, 3);
        let mut late = Link::new(params, 3);
        late.heal_from(heal_at);
        for i in 0..1000 {
            if sent(i) > heal_at {
                at_once.heal_from(heal_at);
            }
            assert_eq!(
                at_once.enqueue_at(sent(i), vec![0; 60]),
                late.enqueue_at(sent(i), vec![0; 60])
            );
        }
        assert_eq!(at_once.stats(), late.stats());
        assert!(late.stats().lost > 0, "the preset lost before healing");
    }
}
