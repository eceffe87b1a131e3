//! Capped exponential backoff with jitter, as a pure function of the attempt number.

use std::time::Duration;

/// First delay.
pub const BASE: Duration = Duration::from_millis(200);
/// Longest delay between two attempts after a transient failure.
pub const CAP: Duration = Duration::from_secs(60);
/// Longest delay after a failure a retry will not fix by itself (access denied, bucket gone, an
/// unreadable file): slow, but never given up.
pub const PERMANENT_CAP: Duration = Duration::from_secs(600);

/// The delay before attempt `attempt + 1` (attempt counts from 0): `BASE * 2^attempt`, capped,
/// with "equal jitter" (half fixed, half random) so that many clients do not retry in step.
pub fn delay(attempt: u32, cap: Duration) -> Duration {
    let exp = BASE.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
    let d = exp.min(cap);
    let half = d / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        for attempt in 0..40 {
            let d = delay(attempt, CAP);
            let full = BASE.saturating_mul(1u32 << attempt.min(20)).min(CAP);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        assert!(delay(30, CAP) >= CAP / 2);
        // Permanent failures: slow, at most ten minutes apart, never given up.
        let slow = delay(30, PERMANENT_CAP);
        assert!(slow >= PERMANENT_CAP / 2 && slow <= PERMANENT_CAP);
        assert!(delay(0, CAP) <= BASE);
    }
}
