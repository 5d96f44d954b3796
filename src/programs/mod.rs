//! One module per program: from the parsed options to the program's end
//! (or to the exec of prog); [`engine`] is what the two engines share.
pub mod engine;
pub mod tlsc_io;
pub mod tlsd;
pub mod tlsd_io;
pub mod ucspitlsd;
