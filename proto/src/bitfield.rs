//! A fixed-length set of chunk indices, one bit per chunk.

use serde::{Deserialize, Serialize};

/// Which chunks of a file a node holds. Invariant: `words.len() == len.div_ceil(64)` and no bit
/// at or beyond `len` is set; [`Bitfield::is_well_formed`] checks it for values from the network.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Bitfield {
    len: u32,
    words: Vec<u64>,
}

impl Bitfield {
    /// An empty set over `len` chunks.
    pub fn new(len: u32) -> Self {
        Bitfield {
            len,
            words: vec![0; len.div_ceil(64) as usize],
        }
    }

    /// The full set over `len` chunks.
    pub fn full(len: u32) -> Self {
        let mut bits = Bitfield::new(len);
        bits.words.iter_mut().for_each(|w| *w = u64::MAX);
        bits.clear_tail();
        bits
    }

    /// How many chunks the set ranges over.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when the set ranges over no chunks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `words` matches `len` and no bit past `len` is set.
    pub fn is_well_formed(&self) -> bool {
        if self.words.len() != self.len.div_ceil(64) as usize {
            return false;
        }
        let mut copy = self.clone();
        copy.clear_tail();
        copy.words == self.words
    }

    fn clear_tail(&mut self) {
        let rem = self.len % 64;
        if rem != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << rem) - 1;
            }
        }
    }

    /// Is chunk `index` in the set? Out-of-range indices are not.
    pub fn get(&self, index: u32) -> bool {
        index < self.len && self.words[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    /// Adds chunk `index`; returns true if it was not there before. Ignores out-of-range indices.
    pub fn set(&mut self, index: u32) -> bool {
        if index >= self.len {
            return false;
        }
        let word = &mut self.words[(index / 64) as usize];
        let bit = 1 << (index % 64);
        let added = *word & bit == 0;
        *word |= bit;
        added
    }

    /// Removes chunk `index`.
    pub fn unset(&mut self, index: u32) {
        if index < self.len {
            self.words[(index / 64) as usize] &= !(1 << (index % 64));
        }
    }

    /// Number of chunks in the set.
    pub fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// True when every chunk is in the set.
    pub fn is_complete(&self) -> bool {
        self.count() == self.len
    }

    /// Adds every chunk of `other` (which must range over the same chunks).
    pub fn union_with(&mut self, other: &Bitfield) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// The indices in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        Self::bits(self.words.iter().copied())
    }

    /// The indices in this set and not in `other` (which must range over the same chunks), in
    /// increasing order.
    pub fn minus<'a>(&'a self, other: &'a Bitfield) -> impl Iterator<Item = u32> + 'a {
        Self::bits(self.words.iter().zip(&other.words).map(|(a, b)| a & !b))
    }

    fn bits(words: impl Iterator<Item = u64>) -> impl Iterator<Item = u32> {
        words.enumerate().flat_map(|(w, word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some(w as u32 * 64 + bit)
            })
        })
    }
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.count(), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minus_lists_what_the_other_lacks() {
        let (mut a, mut b) = (Bitfield::new(130), Bitfield::new(130));
        for c in [1, 64, 100, 129] {
            a.set(c);
        }
        for c in [64, 129, 5] {
            b.set(c);
        }
        assert_eq!(a.minus(&b).collect::<Vec<_>>(), vec![1, 100]);
        assert_eq!(b.minus(&a).collect::<Vec<_>>(), vec![5]);
    }

    #[test]
    fn set_get_count_iter() {
        let mut bits = Bitfield::new(130);
        assert!(bits.set(0) && bits.set(64) && bits.set(129));
        assert!(!bits.set(129));
        assert!(!bits.set(130));
        assert_eq!(bits.count(), 3);
        assert_eq!(bits.iter().collect::<Vec<_>>(), vec![0, 64, 129]);
        bits.unset(64);
        assert!(!bits.get(64) && bits.get(129) && !bits.get(1000));
        assert!(bits.is_well_formed());
    }

    #[test]
    fn full_has_no_tail_bits() {
        let full = Bitfield::full(70);
        assert_eq!(full.count(), 70);
        assert!(full.is_complete() && full.is_well_formed());
        assert!(Bitfield::full(0).is_complete());
    }

    #[test]
    fn detects_malformed() {
        let bad = Bitfield {
            len: 3,
            words: vec![0b1000],
        };
        assert!(!bad.is_well_formed());
        let short = Bitfield {
            len: 65,
            words: vec![0],
        };
        assert!(!short.is_well_formed());
    }
}
