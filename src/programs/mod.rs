//! One module per program: from the parsed options to the program's end
//! (or to the exec of prog).
pub mod tlsd;
pub mod tlsd_io;
pub mod ucspitlsd;
