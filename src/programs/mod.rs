//! One module per program, from the parsed options to the program's end
//! (or to the exec of prog), and what the programs of both roles share:
//! the engine run in the current process (`engine`), UCSPI-TLS's prog and
//! helper (`starttls`), immediate TLS's child engine and prog
//! (`immediate`). A program's module picks its role and its descriptors.
pub mod engine;
pub mod immediate;
pub mod starttls;
pub mod tlsc;
pub mod tlsc_io;
pub mod tlsd;
pub mod tlsd_io;
pub mod ucspitlsc;
pub mod ucspitlsd;
