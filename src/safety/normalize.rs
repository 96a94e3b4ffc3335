//! Turning what people type into the words the rules are written in:
//! lower case, straight apostrophes, and the usual shorthand, slang and
//! misspellings spelt out ("im gna kms" → "i'm going to kill myself").

use regex::{Captures, Regex};
use std::sync::LazyLock;

/// Whole words replaced by their spelt-out form.
const WORDS: &[(&str, &str)] = &[
    ("im", "i'm"),
    ("ive", "i've"),
    ("dont", "don't"),
    ("cant", "can't"),
    ("wont", "won't"),
    ("didnt", "didn't"),
    ("isnt", "isn't"),
    ("wasnt", "wasn't"),
    ("doesnt", "doesn't"),
    ("havent", "haven't"),
    ("wouldnt", "wouldn't"),
    ("couldnt", "couldn't"),
    ("shouldnt", "shouldn't"),
    ("aint", "ain't"),
    ("theres", "there's"),
    ("thats", "that's"),
    ("whats", "what's"),
    ("hes", "he's"),
    ("shes", "she's"),
    ("theyre", "they're"),
    ("youre", "you're"),
    ("ur", "your"),
    ("u", "you"),
    ("r", "are"),
    ("n", "and"),
    ("abt", "about"),
    ("bout", "about"),
    ("gonna", "going to"),
    ("gna", "going to"),
    ("gunna", "going to"),
    ("wanna", "want to"),
    ("gotta", "got to"),
    ("tmrw", "tomorrow"),
    ("tmr", "tomorrow"),
    ("tomoz", "tomorrow"),
    ("tonite", "tonight"),
    ("2nite", "tonight"),
    ("rn", "right now"),
    ("idk", "i don't know"),
    ("cuz", "because"),
    ("cos", "because"),
    ("coz", "because"),
    ("bc", "because"),
    ("kms", "kill myself"),
    ("kys", "kill yourself"),
    ("unalive", "kill"),
    ("unaliving", "killing"),
    ("od", "overdose"),
    ("od'd", "overdosed"),
    ("oded", "overdosed"),
    ("no1", "no one"),
    ("sum1", "someone"),
    ("some1", "someone"),
    ("any1", "anyone"),
    ("every1", "everyone"),
    ("b4", "before"),
    ("ppl", "people"),
    ("pls", "please"),
    ("plz", "please"),
    ("msg", "message"),
    ("cya", "see you"),
    ("disapear", "disappear"),
    ("dissapear", "disappear"),
    ("myslef", "myself"),
    ("suicidial", "suicidal"),
    ("sucide", "suicide"),
    ("suicde", "suicide"),
    ("tho", "though"),
    ("thru", "through"),
    ("alot", "a lot"),
    ("bf", "boyfriend"),
    ("gf", "girlfriend"),
    ("mam", "mum"),
    ("mom", "mum"),
    ("mommy", "mum"),
    ("pils", "pills"),
    ("meds", "medication"),
];

/// Dropped g's: "thinkin" → "thinking". Only these stems, so "skin" and
/// "insulin" stay as they are.
const DROPPED_G: &[&str] = &[
    "think", "end", "do", "go", "drink", "mix", "tak", "follow", "collect", "research", "say",
    "try", "plann", "cutt", "hurt", "feel", "lov", "look", "sav", "buy", "leav", "giv", "walk",
    "driv", "kill", "com", "wait", "hid", "talk", "tell", "gett", "want", "bleed", "sitt", "stay",
    "keep", "writ", "check", "read", "search", "google", "scratch", "burn", "punch", "hitt",
    "start", "stopp", "eat", "sleep", "liv", "dy",
];

static WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[a-z0-9']+").expect("word pattern is valid"));

/// Lower-cased, apostrophes straightened, shorthand spelt out, spaces
/// collapsed. Sentence punctuation is kept: the rules work per clause.
pub fn normalize(text: &str) -> String {
    let lower = text
        .to_lowercase()
        .replace(['\u{2019}', '\u{2018}', '`'], "'")
        .replace(['\u{201c}', '\u{201d}'], "\"");
    let spelt = WORD.replace_all(&lower, |c: &Captures| {
        let word = &c[0];
        if let Some((_, full)) = WORDS.iter().find(|(short, _)| *short == word) {
            return full.to_string();
        }
        if let Some(stem) = word.strip_suffix("in").or_else(|| word.strip_suffix("in'"))
            && DROPPED_G.contains(&stem)
        {
            return format!("{stem}ing");
        }
        word.to_string()
    });
    spelt.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn shorthand_is_spelt_out_and_other_words_kept() {
        assert_eq!(
            normalize("im gna kms tmrw, thinkin bout it"),
            "i'm going to kill myself tomorrow, thinking about it"
        );
        assert_eq!(
            normalize("My skin  and my insulin"),
            "my skin and my insulin"
        );
        assert_eq!(normalize("I\u{2019}ve   DONE it"), "i've done it");
    }
}
