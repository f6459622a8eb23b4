//! Stop strings matched on the streamed text. A stop string may arrive split over several
//! tokens (and several text deltas), so text that could still turn out to be the start of a
//! stop string is held back until it either completes one (generation ends; the text before
//! it is emitted, the stop string itself never is) or stops matching (it is emitted).

#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not emitted yet.
    held: String,
}

/// What one push yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopResult {
    /// Text safe to emit now.
    pub emit: String,
    /// The stop string found, if any: generation ends here.
    pub matched: Option<String>,
}

impl StopMatcher {
    /// Empty stop strings are ignored.
    pub fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopResult {
        if self.stops.is_empty() {
            return StopResult {
                emit: text.to_string(),
                matched: None,
            };
        }
        self.held.push_str(text);
        // the earliest stop string in the held text wins
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, s)| (*at, std::cmp::Reverse(s.len())));
        if let Some((at, s)) = found {
            let emit = self.held[..at].to_string();
            let matched = Some(s.clone());
            self.held.clear();
            return StopResult { emit, matched };
        }
        // hold back the longest tail that is a proper prefix of some stop string
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopResult {
            emit,
            matched: None,
        }
    }

    /// The end of the stream: whatever was held back is plain text after all.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (on character
/// boundaries of both).
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.is_char_boundary(n) && text[start..] == stop[..n]
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, Option<String>) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let r = m.push(p);
            out.push_str(&r.emit);
            if r.matched.is_some() {
                return (out, r.matched);
            }
        }
        out.push_str(&m.flush());
        (out, None)
    }

    #[test]
    fn a_stop_string_split_across_tokens_is_found() {
        assert_eq!(
            run(&["END"], &["Hello E", "N", "D and more"]),
            ("Hello ".into(), Some("END".into()))
        );
    }

    #[test]
    fn a_false_start_is_released() {
        let stops = vec!["\n\nUser:".to_string()];
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("a\n").emit, "a");
        assert_eq!(m.push("\nUs").emit, "");
        // "\n\nUsx" can no longer become the stop string
        assert_eq!(m.push("x").emit, "\n\nUsx");
        assert_eq!(m.flush(), "");
    }

    #[test]
    fn the_earliest_of_several_stops_wins_and_text_ends_before_it() {
        assert_eq!(
            run(&["world", "lo w"], &["hello world"]),
            ("hel".into(), Some("lo w".into()))
        );
    }

    #[test]
    fn without_stops_text_passes_through_and_held_text_is_flushed() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), None));
        assert_eq!(run(&["xyz"], &["abx", "y"]), ("abxy".into(), None));
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        assert_eq!(
            run(&["é!"], &["café", "!"]),
            ("caf".into(), Some("é!".into()))
        );
        assert_eq!(run(&["éa"], &["né", "b"]), ("néb".into(), None));
    }
}
