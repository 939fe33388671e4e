//! Retry delays: exponential backoff with full jitter.

use std::time::Duration;

/// The largest delay before retry number `attempt` (0-based):
/// `min(max_ms, initial_ms * 2^attempt)`, without overflowing.
pub(crate) fn backoff_cap_ms(attempt: u32, initial_ms: u64, max_ms: u64) -> u64 {
    max_ms.min(initial_ms.saturating_mul(2u64.saturating_pow(attempt)))
}

/// A delay drawn uniformly from `0..=backoff_cap_ms(attempt, ..)` ("full jitter"), so that
/// clients which failed together do not retry together.
pub(crate) fn backoff_ms(attempt: u32, initial_ms: u64, max_ms: u64) -> u64 {
    rand::random_range(0..=backoff_cap_ms(attempt, initial_ms, max_ms))
}

/// Sleep for a jittered backoff delay before retry number `attempt`.
pub(crate) async fn sleep_backoff(attempt: u32, initial_ms: u64, max_ms: u64) {
    let ms = backoff_ms(attempt, initial_ms, max_ms);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_doubles_then_saturates() {
        assert_eq!(backoff_cap_ms(0, 100, 5_000), 100);
        assert_eq!(backoff_cap_ms(1, 100, 5_000), 200);
        assert_eq!(backoff_cap_ms(5, 100, 5_000), 3_200);
        assert_eq!(backoff_cap_ms(6, 100, 5_000), 5_000);
        assert_eq!(backoff_cap_ms(63, 100, 5_000), 5_000);
        assert_eq!(backoff_cap_ms(64, 100, 5_000), 5_000);
        assert_eq!(backoff_cap_ms(u32::MAX, u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(backoff_cap_ms(3, 0, 5_000), 0);
    }

    #[test]
    fn jittered_delay_stays_within_bounds_and_varies() {
        for attempt in 0..20 {
            let cap = backoff_cap_ms(attempt, 100, 5_000);
            let mut seen_low = false;
            let mut seen_high = false;
            for _ in 0..2_000 {
                let d = backoff_ms(attempt, 100, 5_000);
                assert!(d <= cap, "attempt {attempt}: {d} > {cap}");
                seen_low |= d <= cap / 4;
                seen_high |= d >= cap - cap / 4;
            }
            assert!(
                seen_low && seen_high,
                "attempt {attempt}: jitter does not span 0..={cap}"
            );
        }
        assert_eq!(backoff_ms(10, 0, 0), 0);
        // Extreme inputs must neither overflow nor panic.
        let _ = backoff_ms(u32::MAX, u64::MAX, u64::MAX);
    }
}
