mod cli;
mod lint;
mod personas;
mod properties;
mod text_format;
mod util;
