mod cli;
mod embedded;
mod lint;
mod personas;
mod properties;
mod text_format;
mod util;
