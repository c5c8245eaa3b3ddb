//! Page cache: LRU of 4 KiB pages per file, dirty tracking as extents for
//! writeback, `fadvise(DONTNEED)`-style range drops.
//!
//! Enough of Linux's behaviour for the paper's cached-read experiments: a
//! streaming reader or writer pushes a cached working set out of memory; dirty
//! pages cannot be evicted until written back; writeback writes contiguous
//! dirty runs in file order, tagged with the priority of the writer.

use crate::request::IoPrio;
use crate::units::Time;
use std::collections::BTreeMap;

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    file: u32,
    page: u32,
    prev: u32,
    next: u32,
    dirty: bool,
    writeback: bool,
    /// fadvise(DONTNEED) found it dirty: drop it once written back.
    drop_when_clean: bool,
}

/// A dirty extent of one file: pages `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirtyExtent {
    /// One past the last page.
    pub end: u64,
    /// When its oldest page was dirtied.
    pub since: Time,
    /// Priority of the writer (the paper's page tagging).
    pub prio: IoPrio,
}

/// A chunk handed to writeback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritebackChunk {
    /// File index.
    pub file: u32,
    /// First page.
    pub page: u64,
    /// Pages in the chunk.
    pub pages: u32,
    /// Priority tag.
    pub prio: IoPrio,
}

/// The cache.
#[derive(Debug)]
pub struct PageCache {
    capacity: u64,
    files: Vec<Vec<u32>>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    used: u64,
    dirty_pages: u64,
    writeback_pages: u64,
    dirty: Vec<BTreeMap<u64, DirtyExtent>>,
    /// Pages evicted so far.
    pub evictions: u64,
}

impl PageCache {
    /// A cache of `capacity_pages` pages over files of the given page counts.
    pub fn new(capacity_pages: u64, file_pages: &[u64]) -> Self {
        PageCache {
            capacity: capacity_pages.max(1),
            // Zeroed tables come from the allocator untouched (calloc), so
            // large files cost nothing until their pages are used.
            files: file_pages.iter().map(|&n| vec![0u32; n as usize]).collect(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            used: 0,
            dirty_pages: 0,
            writeback_pages: 0,
            dirty: file_pages.iter().map(|_| BTreeMap::new()).collect(),
            evictions: 0,
        }
    }

    /// Node index of a cached page, or NIL (tables hold index + 1, 0 = absent).
    fn slot(&self, file: u32, page: u64) -> u32 {
        self.files[file as usize][page as usize].wrapping_sub(1)
    }

    /// Pages in the cache.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Capacity in pages.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Dirty pages not yet under writeback.
    pub fn dirty(&self) -> u64 {
        self.dirty_pages
    }

    /// Pages under writeback.
    pub fn under_writeback(&self) -> u64 {
        self.writeback_pages
    }

    /// Pages of a file.
    pub fn file_pages(&self, file: u32) -> u64 {
        self.files[file as usize].len() as u64
    }

    fn unlink(&mut self, i: u32) {
        let Node { prev, next, .. } = self.nodes[i as usize];
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
    }

    fn push_front(&mut self, i: u32) {
        self.nodes[i as usize].prev = NIL;
        self.nodes[i as usize].next = self.head;
        if self.head != NIL {
            self.nodes[self.head as usize].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    /// Whether a page is cached; a hit moves it to the head of the LRU.
    pub fn touch(&mut self, file: u32, page: u64) -> bool {
        let i = self.slot(file, page);
        if i == NIL {
            return false;
        }
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        true
    }

    /// Whether a page is cached, without touching it.
    pub fn contains(&self, file: u32, page: u64) -> bool {
        self.slot(file, page) != NIL
    }

    fn evict_one(&mut self) -> bool {
        // Walk from the cold end; dirty pages go back to the head (Linux
        // would start writeback on them; the dirty limits keep them a minority).
        let mut budget = 64;
        let mut i = self.tail;
        while i != NIL && budget > 0 {
            let n = self.nodes[i as usize];
            if !n.dirty && !n.writeback {
                self.unlink(i);
                self.files[n.file as usize][n.page as usize] = 0;
                self.free.push(i);
                self.used -= 1;
                self.evictions += 1;
                return true;
            }
            let prev = n.prev;
            self.unlink(i);
            self.push_front(i);
            i = prev;
            budget -= 1;
        }
        false
    }

    fn insert_node(&mut self, file: u32, page: u64) -> u32 {
        let i = self.slot(file, page);
        if i != NIL {
            if self.head != i {
                self.unlink(i);
                self.push_front(i);
            }
            return i;
        }
        while self.used >= self.capacity {
            if !self.evict_one() {
                break;
            }
        }
        let node = Node {
            file,
            page: page as u32,
            prev: NIL,
            next: NIL,
            dirty: false,
            writeback: false,
            drop_when_clean: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.push_front(i);
        self.files[file as usize][page as usize] = i + 1;
        self.used += 1;
        i
    }

    /// Inserts clean pages `[page, page + n)` (a completed read).
    pub fn insert_clean(&mut self, file: u32, page: u64, n: u64) {
        let end = (page + n).min(self.file_pages(file));
        for p in page..end {
            self.insert_node(file, p);
        }
    }

    /// Dirties pages `[page, page + n)` (a buffered write).
    pub fn write(&mut self, file: u32, page: u64, n: u64, now: Time, prio: IoPrio) {
        let end = (page + n).min(self.file_pages(file));
        let mut newly = Vec::new();
        for p in page..end {
            let i = self.insert_node(file, p) as usize;
            if !self.nodes[i].dirty {
                self.nodes[i].dirty = true;
                self.dirty_pages += 1;
                newly.push(p);
            }
        }
        for p in newly {
            self.add_dirty(file, p, now, prio);
        }
    }

    fn add_dirty(&mut self, file: u32, page: u64, now: Time, prio: IoPrio) {
        let map = &mut self.dirty[file as usize];
        if let Some((&s, e)) = map.range_mut(..=page).next_back() {
            if page < e.end {
                return;
            }
            if e.end == page && e.prio == prio {
                e.end = page + 1;
                // Join with a following extent that now touches this one.
                if let Some(next) = map.get(&(page + 1)).copied() {
                    if next.prio == prio {
                        map.remove(&(page + 1));
                        let e = map.get_mut(&s).expect("extent exists");
                        e.end = next.end;
                        e.since = e.since.min(next.since);
                    }
                }
                return;
            }
        }
        if let Some(next) = map.get(&(page + 1)).copied() {
            if next.prio == prio {
                map.remove(&(page + 1));
                map.insert(
                    page,
                    DirtyExtent {
                        end: next.end,
                        since: next.since.min(now),
                        prio,
                    },
                );
                return;
            }
        }
        map.insert(
            page,
            DirtyExtent {
                end: page + 1,
                since: now,
                prio,
            },
        );
    }

    /// Takes up to `max_pages` contiguous dirty pages for writeback: from
    /// `file` only if given, within `[from, to)` pages if given, dirtied no
    /// later than `older_than` if given. The pages move from dirty to
    /// under-writeback.
    pub fn take_dirty(
        &mut self,
        file: Option<u32>,
        range: Option<(u64, u64)>,
        older_than: Option<Time>,
        max_pages: u32,
    ) -> Option<WritebackChunk> {
        let files: Vec<u32> = match file {
            Some(f) => vec![f],
            None => (0..self.dirty.len() as u32).collect(),
        };
        for f in files {
            let map = &self.dirty[f as usize];
            let (lo, hi) = range.unwrap_or((0, u64::MAX));
            let found = map
                .range(..hi)
                .find(|(&s, e)| e.end > lo && s < hi && older_than.is_none_or(|t| e.since <= t))
                .map(|(&s, e)| (s, *e));
            let Some((s, e)) = found else {
                continue;
            };
            let start = s.max(lo);
            let end = e.end.min(hi).min(start + max_pages as u64);
            let map = &mut self.dirty[f as usize];
            map.remove(&s);
            if s < start {
                map.insert(s, DirtyExtent { end: start, ..e });
            }
            if end < e.end {
                map.insert(end, DirtyExtent { end: e.end, ..e });
            }
            for p in start..end {
                let i = self.slot(f, p);
                if i != NIL {
                    let n = &mut self.nodes[i as usize];
                    if n.dirty {
                        n.dirty = false;
                        n.writeback = true;
                        self.dirty_pages -= 1;
                        self.writeback_pages += 1;
                    }
                }
            }
            return Some(WritebackChunk {
                file: f,
                page: start,
                pages: (end - start) as u32,
                prio: e.prio,
            });
        }
        None
    }

    /// Marks a written-back chunk clean.
    pub fn writeback_done(&mut self, file: u32, page: u64, pages: u32) {
        for p in page..page + pages as u64 {
            let i = self.slot(file, p);
            if i != NIL && self.nodes[i as usize].writeback {
                self.nodes[i as usize].writeback = false;
                self.writeback_pages -= 1;
                if self.nodes[i as usize].drop_when_clean && !self.nodes[i as usize].dirty {
                    self.remove(i);
                }
            }
        }
    }

    /// Drops clean pages of `[from, to)` (`fadvise(POSIX_FADV_DONTNEED)`);
    /// dirty pages and pages under writeback stay until written back, then
    /// go (as a later fadvise over them would do). Returns the count dropped.
    pub fn drop_range(&mut self, file: u32, from: u64, to: u64) -> u64 {
        let to = to.min(self.file_pages(file));
        let mut dropped = 0;
        for p in from..to {
            let i = self.slot(file, p);
            if i == NIL {
                continue;
            }
            let n = &mut self.nodes[i as usize];
            if n.dirty || n.writeback {
                n.drop_when_clean = true;
                continue;
            }
            self.remove(i);
            dropped += 1;
        }
        dropped
    }

    fn remove(&mut self, i: u32) {
        let n = self.nodes[i as usize];
        self.unlink(i);
        self.files[n.file as usize][n.page as usize] = 0;
        self.free.push(i);
        self.used -= 1;
    }

    /// Whether any dirty page of `file` remains (not counting writeback).
    pub fn has_dirty(&self, file: u32) -> bool {
        !self.dirty[file as usize].is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_coldest_clean_page() {
        let mut c = PageCache::new(3, &[10]);
        c.insert_clean(0, 0, 3);
        assert!(c.touch(0, 0));
        c.insert_clean(0, 5, 1);
        assert!(c.contains(0, 0));
        assert!(!c.contains(0, 1));
        assert_eq!(c.used(), 3);
    }

    #[test]
    fn dirty_pages_survive_eviction_until_written_back() {
        let mut c = PageCache::new(4, &[100]);
        c.write(0, 0, 2, 0, IoPrio::DEFAULT);
        assert_eq!(c.dirty(), 2);
        c.insert_clean(0, 10, 10);
        assert!(c.contains(0, 0) && c.contains(0, 1));
        let w = c.take_dirty(None, None, None, 128).unwrap();
        assert_eq!((w.page, w.pages), (0, 2));
        assert_eq!(c.dirty(), 0);
        assert_eq!(c.under_writeback(), 2);
        c.writeback_done(0, 0, 2);
        assert_eq!(c.under_writeback(), 0);
        c.insert_clean(0, 30, 4);
        assert!(!c.contains(0, 0));
    }

    #[test]
    fn dirty_extents_coalesce_and_split() {
        let mut c = PageCache::new(1000, &[1000]);
        c.write(0, 500, 10, 1000, IoPrio::be(7));
        for p in 0..100 {
            c.write(0, p, 1, p, IoPrio::be(7));
        }
        let w = c.take_dirty(Some(0), None, None, 32).unwrap();
        assert_eq!((w.page, w.pages, w.prio), (0, 32, IoPrio::be(7)));
        let w = c.take_dirty(Some(0), Some((50, 60)), None, 32).unwrap();
        assert_eq!((w.page, w.pages), (50, 10));
        assert_eq!(c.dirty(), 110 - 42);
        // Only the extent dirtied at t=1000 is young; drain the old ones.
        while let Some(w) = c.take_dirty(None, None, Some(500), 32) {
            assert!(w.page < 100);
        }
        assert_eq!(c.dirty(), 10);
        assert_eq!(c.take_dirty(None, None, Some(1000), 32).unwrap().page, 500);
    }

    #[test]
    fn drop_range_keeps_dirty_pages() {
        let mut c = PageCache::new(100, &[100]);
        c.insert_clean(0, 0, 10);
        c.write(0, 5, 1, 0, IoPrio::DEFAULT);
        assert_eq!(c.drop_range(0, 0, 10), 9);
        assert!(c.contains(0, 5));
        // Once written back it goes too.
        let w = c.take_dirty(Some(0), None, None, 8).unwrap();
        assert!(c.contains(0, 5));
        c.writeback_done(0, w.page, w.pages);
        assert!(!c.contains(0, 5));
        assert_eq!(c.used(), 0);
    }
}
