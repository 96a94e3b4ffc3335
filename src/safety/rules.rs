//! The rules layer: semantic frames per category of the taxonomy, over
//! normalised text, and the contexts that take a match back (negation,
//! hyperbole and idiom, someone else's story, work and fiction, a past that
//! is over).
//!
//! A frame names who (the speaker), what (a family of predicates) and of
//! what (objects, means). The vocabularies below are the families; frames
//! combine them with `{NAME}` placeholders.

use super::Category;
use regex::Regex;
use std::sync::LazyLock;

/// The families the frames are written in.
const VOCABULARY: &[(&str, &str)] = &[
    // Ending one's own life, as people say it.
    (
        "END_MY_LIFE",
        r"(?:kill(?:ing)? myself|end(?:ing)? (?:my (?:own )?life|it all|it|things|everything|myself|my suffering)|tak(?:e|ing) my (?:own )?life|commit(?:ting)? suicide|suicide|off(?:ing)? myself|top(?:ping)? myself|do(?:ing)? myself in|finish(?:ing)? (?:it|myself|things)(?: off)?|check(?:ing)? out (?:early|for good|permanently)|not be(?:ing)? around (?:by my own hand|anymore)|end(?:ing)? my own story|hang(?:ing)? myself|overdos(?:e|ing)|jump(?:ing)? off (?:something|a bridge|a building)|do(?:ing)? it|go(?:ing)? through with it|act(?:ing)? on (?:it|them|the thoughts|these thoughts))",
    ),
    // Being dead or gone, as a state.
    (
        "DEAD",
        r"(?:dead|gone|not (?:alive|here|around)|never born|not exist(?:ing)?|no longer (?:here|alive|around))",
    ),
    // Means of suicide.
    (
        "MEANS",
        r"(?:pills?|tablets?|medication|meds|paracetamol|tylenol|painkillers|sleeping pills|insulin|antidepressants|the lot|everything in the (?:cabinet|cupboard|drawer|box)|rope|cord|noose|belt|ligature|gun|shotgun|rifle|firearm|bullets?|shells|blades?|razors?|knife|knives|poison|bleach|antifreeze|charcoal|barbecue|helium|exhaust|bridge|cliff|roof|ledge|tracks|train|motorway|car park|multi-?storey|balcony|building|river|sea|quarry)",
    ),
    // First-person subjects.
    ("I", r"(?:i|i'm|i've|i'd|i'll|i am|i have|i was)"),
    // A partner, present or past.
    (
        "PARTNER",
        r"(?:husband|wife|partner|boyfriend|girlfriend|fianc[eé]e?|spouse|ex|ex-partner|ex-husband|ex-wife|other half)",
    ),
    // Violent acts done to someone.
    (
        "HURTS",
        r"(?:hits?|hitting|hit|beats?|beat|beating|punch(?:es|ed)?|kick(?:s|ed)?|slap(?:s|ped)?|chok(?:es|ed|ing)|strangl(?:es|ed|ing)|shov(?:es|ed)|push(?:es|ed)|grabbed|smash(?:es|ed)|threw|throws|hurts?|hurt|burn(?:s|ed|t)|whips?|whipped|shakes|shook|bit|kneel|squeez(?:es|ed)|pinned|pins|drags?|dragged)",
    ),
    // Family members and carers a child lives with.
    (
        "CARER",
        r"(?:dad|father|stepdad|step-dad|stepfather|mum|mother|stepmum|step mum|step-mum|stepmother|mum's boyfriend|mum's partner|mum's new partner|dad's girlfriend|uncle|aunt|grandad|grandpa|nan|gran|brother|sister|babysitter|childminder|carer|foster (?:mum|dad|parent|carer)|coach|teacher|step ?brother)",
    ),
];

struct Frame {
    category: Category,
    pattern: Regex,
    /// What, right after the match, takes it back ("a plan" but not "a
    /// plan for the weekend"): the regex crate has no look-ahead, so a
    /// frame's trailing `(?!...)` is split off into this.
    unless: Option<Regex>,
}

fn expand(pattern: &str) -> String {
    let mut out = pattern.to_string();
    // Twice: a family can name another.
    for _ in 0..2 {
        for (name, words) in VOCABULARY {
            out = out.replace(&format!("{{{name}}}"), words);
        }
    }
    out
}

fn frames(category: Category, patterns: &[&str]) -> Vec<Frame> {
    let compile = |p: &str| Regex::new(&expand(p)).unwrap_or_else(|e| panic!("frame {p}: {e}"));
    patterns
        .iter()
        .map(|p| {
            let (pattern, unless) = match p.rfind("(?!") {
                Some(at) if p.ends_with(')') => {
                    (&p[..at], Some(format!("^(?:{})", &p[at + 3..p.len() - 1])))
                }
                _ => (*p, None),
            };
            Frame {
                category,
                pattern: compile(pattern),
                unless: unless.as_deref().map(compile),
            }
        })
        .collect()
}

static FRAMES: LazyLock<Vec<Frame>> = LazyLock::new(|| {
    use Category::*;
    let mut all = Vec::new();
    all.extend(frames(
        SuicidalIntent,
        &[
            r"\b(?:i'm|i am|i will|i'll|i've decided to|i have decided to|i've made up my mind to|i'm ready to|i'm finally going to|i intend to|i mean to) (?:going to )?(?:finally )?{END_MY_LIFE}\b",
            r"\bi'm (?:going to|about to) (?:finally )?(?:do it|go through with it|end it|finish it|act on it|end things|take my life|kill myself)\b",
            r"\b(?:made up my mind|made my decision|my mind is made up|i've decided|i have decided|decision is made|i'm decided)\b",
            r"\b(?:won't|will not|not going to) be (?:here|around|alive|a problem|a burden|your problem) (?:much longer|for much longer|by|next|after|tomorrow|anymore|for long|for your next)\b",
            r"\b(?:won't|will not) be (?:a problem|a burden) for (?:much )?longer\b",
            r"\b(?:this is|today is|tonight is|it's) (?:my|the) last (?:day|night|session|time you'll (?:see|hear)|week)\b",
            r"\byou won't (?:see|hear from) me (?:again|next week|after)\b",
            r"\bno(?: one|body|thing) (?:can|will|is going to) (?:stop|change) (?:me|my mind|that)\b",
            r"\b(?:i'm|i am) (?:ready to (?:go|die|leave this world)|at peace with (?:it|my decision|dying))\b",
            r"\bthis is it for me\b.*\b(?:done|going through|over)\b",
            r"\b(?:once|after|when) [^.]{3,40}\bi'm going\b",
        ],
    ));
    all.extend(frames(
        SuicidePlan,
        &[
            r"\b(?:i've|i have|i) (?:got|have) (?:a|the) plan\b(?! for the weekend| for (?:the|my) (?:day|week|holiday))",
            r"\bthat's the plan\b|\bthe plan is to\b[^.]*\b(?:not come back|end|die|do it|take|jump)\b",
            r"\b(?:worked (?:it|everything) out|got it (?:all )?(?:figured|worked|planned) out|it's (?:all )?(?:mapped|planned|worked) out|thought through every step|all mapped out|it's sorted|nothing left to work out)\b",
            r"\bi know (?:exactly )?(?:how and when|when and how|where and when|which (?:building|bridge|floor|night|day)|how i'(?:d|ll) do it|how i would do it|how i'm going to do it|what i'm going to (?:take|use))\b",
            r"\b(?:picked|chosen|chose|set|decided on|worked out) (?:the|a|my) (?:spot|place|way|date|day|time|method|bridge|night|building)\b",
            r"\b(?:then|and) (?:take|swallow) (?:everything|all of (?:it|them)|the lot|all (?:my|the) \w+)\b",
            r"\b(?:planning|planned|plan) (?:to|on|how to|my) (?:kill myself|end (?:it|my life|things)|die|suicide|take my life|do it)\b",
            r"\b(?:pills|tablets) (?:and|n|with) (?:vodka|wine|whisky|alcohol|booze)\b",
        ],
    ));
    all.extend(frames(
        PreparatoryBehaviour,
        &[
            r"\b(?:wrote|written|writing|left|drafted|finished) (?:a |my |the |some )?(?:suicide |goodbye |farewell |last )?(?:note|notes|letters?|messages?) (?:to|for) (?:everyone|each of|my|the kids|them|people|you|her|him)\b",
            r"\b(?:wrote|written|writing|left|drafted) (?:my|a) (?:suicide |goodbye )?note\b",
            r"\b(?:suicide|goodbye|farewell) (?:note|letter)s?\b",
            r"\b(?:to read|to open|to find) (?:after|when i'm gone|once i'm gone)\b",
            r"\b(?:after i'm gone|when i'm gone|once i'm gone|when i'm not here|after i've gone|after i go)\b",
            r"\b(?:updated|made|wrote|sorted|finalised|finalized|changed) (?:my|out my) (?:will|affairs|life insurance|funeral)\b(?! after| because| when| before the)",
            r"\b(?:getting|got|put|putting) (?:my )?(?:things|affairs|everything|stuff) in order\b",
            r"\b(?:chosen|picked|chose) (?:the )?songs for my funeral\b|\bmy funeral (?:plans|instructions|songs)\b",
            r"\b(?:practised|practiced|rehearsed|tested|tried out) (?:with )?(?:the|a|how|whether|if) (?:cord|rope|belt|noose|knot|beam|it would hold)\b",
            r"\b(?:practised|practiced|rehearsed) [^.]{0,30}\b(?:go through with it|do it)\b",
            r"\btied (?:a|the) (?:noose|rope|knot)\b",
            r"\b(?:went|been|drove|walked|go|going) (?:up )?(?:to|out to) (?:the|a) (?:bridge|cliffs?|roof|tracks|edge|quarry|car park|top floor)\b[^.]*\b(?:to see|what it (?:felt|feels) like|where i'd|stood|how it|working out|check)\b",
            r"\b(?:lined|counted|laid) (?:all )?(?:the |my )?(?:pills|tablets) (?:up|out)\b|\b(?:lined|laid) (?:all )?(?:the |my )?(?:pills|tablets)\b",
            r"\b(?:passwords?|bank details|pin numbers?)\b[^.]*\b(?:envelope|for my|card for|left|written down)\b",
            r"\blife insurance\b[^.]*\b(?:find|clause|pay out|payout|policy)\b",
            r"\bcircled on the calendar\b|\bi've set the date\.",
            r"\b(?:deleted|deleting) (?:all )?my (?:socials|accounts)\b[^.]*\b(?:after|messages|letters|notes|goodbye)\b",
        ],
    ));
    all.extend(frames(
        SuicidalBehaviour,
        &[
            r"\b(?:i've|i have|i|i just|just) (?:took|taken|swallowed|downed|drunk|drank) (?:a load of|a bunch of|all|all of|everything|the whole|the lot|loads of|a handful of|too many|the bleach|bleach|every|a (?:whole )?(?:bottle|box|packet|pack) of)\b(?! (?:ibuprofen|a deep breath))",
            r"\b(?:took|taken|swallowed) (?:a load of|a bunch of|loads of|too many|a handful of|all) (?:my |her |his |the |mum's |dad's )?(?:pills|tablets|medication|paracetamol|painkillers|sleeping pills)\b",
            r"\b(?:tried|attempted|tried once|i tried|made an attempt) (?:to )?(?:{END_MY_LIFE}|die|do it|end it)\b",
            r"\b(?:i )?tried (?:last|on|at|in|a few|two|three|once)\b[^.]*\b(?:woke up|didn't work|nobody knows|found me|stopped)\b",
            r"\b(?:my|an|a|the) (?:suicide )?attempt (?:on my life|last|in|at|and)\b|\battempt on my (?:own )?life\b|\bmy (?:suicide )?attempt\b(?! was (?:\w+ )?years ago)",
            r"\b(?:tried to do it|it didn't work)\b",
            r"\b(?:on|at) the (?:ledge|edge|railing|tracks)\b[^.]*\b(?:talked me down|pulled me back|stopped me|turned back|last night|yesterday)\b",
            r"\b(?:rope|cord|belt|noose) (?:round|around) my neck\b",
            r"\b(?:woke up|ended up|was) in (?:a&e|hospital|the er|intensive care|icu)\b[^.]*\b(?:after i|took|pills|tablets|wasn't an accident|overdose)\b",
            r"\b(?:wasn't|was not) an accident\b",
            r"\bi overdosed\b|\b(?:my|an|the) overdose\b(?! (?:call|cases?))",
            r"\b(?:drove|steered|swerved) (?:at|into|towards) (?:the|a) (?:wall|tree|bridge|barrier|lorry|truck)\b",
            r"\bwanted it to be the end\b|\bcut deep\b",
            r"\b(?:waist|chest|neck)[- ]deep in the (?:water|sea|river|lake)\b",
            r"\bfeeling (?:really )?(?:sleepy|drowsy|woozy)\b[^.]*\b(?:pills|tablets|took|swallowed)\b|\b(?:swallowed|took) [^.]*\bfeeling (?:really )?(?:sleepy|drowsy)\b",
        ],
    ));
    all.extend(frames(
        IdeationWithMethod,
        &[
            r"\b(?:thought|thinking|think|thoughts|wondered|wondering|wonder|picture|picturing|imagine|imagining|fantasi[sz]e|fantasi[sz]ing) (?:about |of )?(?:how|what) (?:i(?:'d| would| could| might)|it would be|to|i'd) (?:do it|end it|kill myself|go|die|feel|happen)\b",
            r"\b(?:thought|thinking|think|thoughts|wondered|wondering|picture|picturing|imagine|imagining) (?:about |of )?(?:how easy it would be|taking all|jumping|stepping (?:out|off|in front)|walking into|hanging|drowning|crashing|driving into|the (?:pills|tablets|tracks|bridge|rope|gun|knives))\b",
            r"\bhow easy it would be to (?:just )?(?:turn the wheel|jump|step|let go|take|drive|fall|end)\b",
            r"\b(?:would|could) hold my weight\b",
            r"\bhow high up\b|\bhow (?:far|long) (?:the )?(?:drop|fall) (?:is|would be)\b",
            r"\bwhat would happen if i (?:took|injected|swallowed|jumped|stepped|drank)\b",
            r"\b(?:look|looks|looking|started to look) different to me\b",
            r"\b(?:the (?:gun|shotgun|rifle|pills|tablets|rope|knives|bridge|tracks)) [^.]{0,40}\bi think about (?:it|them)\b",
            r"\bi think about (?:it|them) more than i should\b",
            r"\b(?:thought|thinking|think) (?:about|of) (?:jumping|throwing myself|stepping|walking into|hanging myself|drowning myself|slitting|overdosing|crashing|driving (?:off|into))\b",
            r"\b(?:thought|thinking) about how i'?d do it\b|\bhow i'd do it\b",
            r"\bif i (?:just )?(?:pulled the door down|turned the wheel|let go|stepped off|leaned forward)\b",
            r"\bswimming out until i can't\b|\bwalk(?:ing)? into the (?:sea|river|lake|traffic)\b",
        ],
    ));
    all.extend(frames(
        SuicidalThoughts,
        &[
            r"\b(?:thought|thoughts|thinking|think|thinkin|idea|ideas|urge|urges) (?:of|about|abt) (?:just )?{END_MY_LIFE}",
            r"\b(?:thought|thoughts|thinking|idea) (?:of|about) (?:just )?(?:ending (?:it|things|my life)|not being (?:around|here|alive) by my own hand|killing myself|taking my (?:own )?life|doing myself in|suicide)\b",
            r"\bsuicidal\b",
            r"\b(?:i|i just|i really|part of me|i still|i kind of|i sort of|i sometimes|sometimes i) (?:want|wants|need|needs|wanted|feel like i want) to (?:{END_MY_LIFE}|die)\b",
            r"\bkill myself\b|\bkilling myself\b|\bend my (?:own )?life\b|\bending my (?:own )?life\b|\btake my (?:own )?life\b|\btaking my (?:own )?life\b",
            r"\b(?:end your life|finish it|kill yourself)\b[^.]*\b(?:voice|head|telling me)\b|\b(?:voice|voices) [^.]{0,40}\b(?:end your life|kill yourself|finish it)\b",
            r"\bdark thoughts\b",
            r"\bwant(?:s|ed|ing)? to (?:die|be dead)\b",
            r"\bchecking out early\b",
            r"\bnot being around by my own hand\b",
            r"\bsuicide\b",
        ],
    ));
    all.extend(frames(
        WishToBeDead,
        &[
            r"\b(?:wish|wished|wishing|hope|hoping|hoped|pray|praying|prayed|ask god) (?:that )?(?:i (?:was|were|could be|'d be) (?:dead|gone)|i (?:hadn't|had not|wasn't|weren't) (?:been )?born|i'd never been born|i (?:could|would) (?:just )?(?:disappear|vanish|fade|stop existing|not exist|not wake up|die|go to sleep)|i (?:wouldn't|won't|don't|didn't|never) wake up|i (?:just )?didn't exist)",
            r"\b(?:wish|wished|wishing) i (?:could|would) (?:just )?(?:go to sleep|fall asleep|sleep) (?:and|&) (?:never|not) wake\b",
            r"\b(?:go to sleep|fall asleep|sleep) (?:and|&) (?:never|not) wake up\b",
            r"\b(?:to )?take me in my sleep\b|\bcalled (?:me|her|him) home\b[^.]*\bi feel\b",
            r"\bwouldn't (?:wake up|make it)\b[^.]*\b(?:wouldn't (?:exactly )?mind|be (?:kinda |kind of )?relieved|be ok|be fine)\b",
            r"\b(?:wouldn't|won't|wouldnt) (?:exactly |really )?(?:mind|care) if i (?:died|didn't wake up|got hit|never woke up|was dead|were dead|didn't make it|was gone)\b",
            r"\bif (?:i got hit by|a (?:bus|car|truck|lorry) hit) [^.]*\b(?:relieved|wouldn't (?:care|mind)|be fine|be ok)\b",
            r"\b(?:hoped|hoping|hope) (?:it|the plane|we|the car) (?:would )?(?:just )?(?:go down|crash|hit me)\b",
            r"\b(?:i'd|i would) (?:rather|prefer to) be (?:dead|gone)\b|\bbetter off dead\b",
            r"\b(?:i )?(?:just )?want to (?:stop existing|not exist|disappear (?:forever|for good|completely)|not be here|vanish|fade (?:away|out)|sleep forever|not wake up|be dead|be gone)\b",
            r"\bwant (?:everything|it all|it) to (?:just )?stop,? (?:forever|for good|permanently)\b",
            r"\b(?:don't|do not|didn't) want to (?:be alive|live|exist|wake up|be here) ?(?:anymore|any more)?\b",
            r"\b(?:tired|sick) of (?:being alive|living|existing|life)\b|\b(?:done|finished) with (?:life|living|being alive)\b",
            r"\bif i (?:just )?(?:wasn't|weren't|was not|were not) (?:here|around|alive)(?: anymore)?\b",
            r"\bif i could (?:just )?(?:fade out|disappear|vanish|stop existing|not exist)\b",
            r"\bnot exist at all\b|\bstop existing\b",
            r"\bbetter for everyone if i'?d never been born\b|\bnever been born\b",
            r"\b(?:death|dying) (?:would be|sounds like|feels like) (?:a )?(?:relief|peace|rest|easier|better)\b",
        ],
    ));
    all.extend(frames(
        Hopelessness,
        &[
            r"\bnothing (?:is |'s )?(?:ever )?(?:going to|will|would) (?:ever )?(?:get better|change|improve|be different|work out)\b(?! (?:at|in) (?:work|the office))",
            r"\b(?:never|not ever) (?:going to )?(?:get|gets|getting) (?:any )?better\b",
            r"\bit never gets better\b",
            r"\b(?:can't|cannot|don't) see (?:a|any) (?:future|way out|way forward|point|light|end)\b",
            r"\b(?:no|got no|have no|there's no) (?:future|hope|way out)\b(?: (?:for me|left|of this))?",
            r"\bno way out of this\b",
            r"\b(?:feel|feeling|i'm|i am|everything's|it's all|life is|my life is) (?:so |completely |totally )?hopeless\b",
            r"\b(?:what's|whats) (?:even )?the point\b(?! (?:of|in) (?:ironing|going|the gym|\w+ing (?:if|when)))",
            r"\bwhy bother\b",
            r"\b(?:there's no|isn't any|no) fixing me\b|\btoo far gone\b",
            r"\b(?:past|beyond) (?:that|help|saving|hope)\b",
            r"\bthis is it\.|\bthis is (?:it|all) (?:for me|there is|my life)\b",
            r"\bdoesn't have an end\b|\brun out of doors\b|\bnothing waiting for me\b",
            r"\b(?:given|give) up (?:on (?:everything|myself|life|me)|hope)\b",
            r"\balways (?:be|going to be) like this\b",
            r"\bstopped believing there's anything\b",
        ],
    ));
    all.extend(frames(
        Burden,
        &[
            r"\b(?:i'm|i am|i feel like|i feel|i've become|just) (?:just |such |nothing but |only )?(?:a |an )?(?:burden|drain|dead weight|weight round|waste of (?:space|oxygen|air|money)|problem for everyone|nuisance)\b",
            r"\b(?:everyone|everybody|they|they'd|my family|my (?:kids|children|wife|husband|partner|mum|dad|son|daughter|friends)|people|the world|he|she|he'd|she'd)(?:'d| would)? (?:all )?(?:be )?(?:better off|happier|fine|easier|breathe easier|move on)[^.]*\b(?:without me|if i (?:was|were|wasn't|weren't) (?:gone|dead|here|around)|if i'?m gone|if i was gone|if i wasn't here|if i wasn't around|if she didn't have me|if he didn't have me)\b",
            r"\bbetter off without me\b|\bhappier without me\b",
            r"\b(?:easier|better) (?:life )?(?:for (?:everyone|them|her|him)|life) if i (?:wasn't|weren't) (?:around|here)\b",
            r"\bif i (?:wasn't|weren't) (?:around|here) to mess it up\b",
            r"\b(?:get|have) (?:her|his|their) life back if i\b",
            r"\b(?:i )?(?:cause|bring|am) nothing but (?:trouble|pain|problems)\b",
            r"\btaking up space\b|\bleech\b",
            r"\bless to worry about if (?:she|he|they) didn't have me\b",
            r"\bweight round everyone's neck\b|\bdrain on everyone\b",
            r"\bdeserves? someone who isn't broken\b|\bwithout me in the picture\b",
        ],
    ));
    all.extend(frames(
        NoReasonToLive,
        &[
            r"\b(?:nothing|no one|nobody) (?:left )?(?:for me )?to live for\b",
            r"\b(?:no|not one|not a single|can't think of (?:one|a|any)|don't have (?:a|any)|got no) (?:single )?(?:reason|reasons|point|purpose) (?:to|for|in) (?:live|living|keep going|be alive|being alive|still be here|stay|stick around|carry on|go on|get up|exist)\b",
            r"\bno (?:reason|point|purpose) (?:to|in|for) (?:me )?(?:be(?:ing)? (?:alive|here)|stick(?:ing)? around|exist(?:ing)?|carry(?:ing)? on|keep(?:ing)? going)\b",
            r"\b(?:what's|whats|what is) (?:even )?the point (?:of|in) (?:being alive|living|life|existing|me|going on|carrying on|any of it)\b",
            r"\b(?:don't|can't) see the point (?:of|in) (?:existing|living|being alive|life|going on|carrying on)\b",
            r"\b(?:life|living) is (?:pointless|meaningless)\b|\blife (?:isn't|is not|ain't) worth (?:living|it)\b",
            r"\bwhy should i (?:carry on|keep going|go on|live|bother living)\b|\bwhy am i (?:even )?(?:alive|still here|here)\b",
            r"\b(?:my )?reasons? for living (?:have|has) (?:all )?gone\b",
            r"\bnothing to stay for\b|\bno purpose to me being alive\b|\blast thing getting me up\b",
        ],
    ));
    all.extend(frames(
        SayingGoodbye,
        &[
            r"\b(?:won't|will not) need (?:any more|more) sessions\b",
            r"\bi love you all and i'm sorry\b|\btake care of each other\b",
            r"\b(?:look after|take care of) (?:mum|dad|my \w+|them|her|him) for me\b",
            r"\bif i don't see you again\b",
            r"\bplease tell (?:my|the) \w+ (?:i was|that i was|i never|i loved|i love)\b|\btell (?:the kids|my kids|them|her|him) (?:their \w+ |that i |i )?(?:loved|love)\b",
            r"\b(?:said|say|saying) (?:bye|goodbye|my goodbyes) to everyone\b[^.]*\b(?:finished|done|last|for good|good to be)\b",
            r"\bit's been an honour knowing you\b",
            r"\bthis is the last time i'll\b|\bthis is my last (?:message|msg|text|post)\b(?! from this)",
            r"\bdon't cry for me\b",
            r"\bsee you on the other side\b(?! of)",
            r"\b(?:not going to|won't) make (?:it to )?next week\b",
            r"\bgoodbye,? (?:forever|for good|my friend|everyone|all)\b",
            r"\bthank(?:s| you) for everything\b[^.]*\b(?:won't|last|goodbye|look after|forever|mum|bye)\b",
            r"\bsorry for everything\b[^.]*\b(?:last time|won't|bother you|goodbye)\b",
        ],
    ));
    all.extend(frames(
        GivingAwayBelongings,
        &[
            r"\b(?:won't|will not|wont) (?:be )?(?:need(?:ing)?|use|using|have any use for) (?:it|them|this|my \w+|any of (?:it|them)) (?:where i'm going|anymore|any more|soon)\b",
            r"\bwhere i'm going\b",
            r"\bwho gets (?:what|my)\b",
            r"\b(?:won't|wont) be (?:around|here|back) (?:to use|for them|for it)\b",
            r"\b(?:new (?:home|owner) for|someone (?:to take|takes)) (?:my )?(?:cat|dog|\w+)\b[^.]*\b(?:still be here|won't|soon|need a new home)\b|\bneed a new home soon\b",
            r"\bsomeone who'll still be here\b",
            r"\b(?:keep|have) (?:them|it) (?:for good|forever)\b[^.]*\b(?:now|done|mine)\b|\bhis to keep forever\b|\bhers now\b",
            r"\bno point keeping (?:stuff|things|it)\b",
            r"\bnothing left that needs me\b|\bsoon i won't have any use\b",
            r"\b(?:gave|given|giving|handing|handed) (?:away )?(?:all )?my (?:\w+ )?(?:things|stuff|belongings|possessions)\b[^.]*\b(?:won't|wont|keep|for good|after)\b",
            r"\bcan you make sure someone takes\b",
            r"\blook after them for good\b",
        ],
    ));
    all.extend(frames(
        AcquiringMeans,
        &[
            r"\b(?:saving|saved|stockpil\w*|hoard\w*|collect\w*|stash\w*|keeping|kept|hiding|hid|hidden) (?:up )?(?:my |her |his |the |some |mum's |dad's |my dad's |my mum's )?(?:{MEANS})\b(?! at the club)",
            r"\b(?:{MEANS})\b[^.]{0,60}\b(?:hidden|hid|stashed|saved up|in a tin|not taking|for when i'm ready|in my (?:sock )?drawer|just in case|for later|not for the engine|not for anything|you know (?:why|what (?:it's|its) for)|on purpose)\b",
            r"\b(?:bought|buying|got|getting|ordered|picked up|got hold of|get me|can get me)\b[^.]{0,40}\b(?:{MEANS}|stuff|something)\b[^.]{0,60}\b(?:you know (?:why|what)|not for|on purpose|for when|for myself|for me|for the end|i told him yes|no questions asked|hid|read about)\b",
            r"\bso they (?:wouldn't|won't) notice how many\b|\bdifferent (?:chemists|pharmacies|shops)\b",
            r"\b(?:\d+|two|three|a few|several) (?:months?|weeks?)(?:'|'s)? worth\b",
            r"\bi (?:think|guess) you know why\b|\byou know what (?:it's|its) for\b",
            r"\b(?:cabinet|gun) key\b|\bwhere the (?:shells|bullets|gun|pills|key) (?:are|is) kept\b",
            r"\bgot my hands on\b",
            r"\bfor when i'm ready\b",
            r"\b(?:enough|a lot of|loads of) (?:pills|tablets|medication)\b[^.]*\b(?:to|now|saved|hidden|kept)\b",
        ],
    ));
    all.extend(frames(
        ResearchingMethods,
        &[
            r"\b(?:googl\w*|search\w*|look(?:ed|ing)? up|read(?:ing)?(?: up)? (?:on|about)|research\w*|study\w*|checked|checking|asked (?:the )?\w+|watch\w* videos)\b[^.]{0,80}\b(?:how many|how much|how long|how high|how cold|how quickly|how fast|which (?:bridges?|buildings?|trains?|car parks?)|lethal|fatal|overdose|painless|quickest|easiest|ways to (?:go|die)|methods?|bleed out|heart stops|lose consciousness|tallest|high enough|go straight through|no barriers|what other people used|would be fatal|to die)\b",
            r"\b(?:lethal|fatal) (?:dose|doses|amount)\b",
            r"\bpainless ways?\b|\bways to (?:go|die|do it)\b",
            r"\b(?:timetable|trains) [^.]*\b(?:without stopping|straight through|don't stop)\b",
            r"\bhow (?:long|quickly) (?:it takes|you'd|you would|until) (?:to )?(?:bleed|lose consciousness|die|drown|pass out|heart stops)\b",
            r"\bwhat (?:amount|dose) of my (?:meds|medication|pills|tablets)\b",
            r"\bforums? reading what\b|\bforums?\b[^.]*\b(?:used|methods?|how)\b",
            r"\bhow much before (?:your|my) heart\b",
        ],
    ));
    all.extend(frames(
        RecklessBehaviour,
        &[
            r"\b(?:don't|didn't|do not|doesn't|wouldn't|not) (?:really |even )?(?:care|mind|bothered)\b[^.]{0,40}\b(?:what happens|if (?:i|it|something|they|that) (?:die|dies|crash|kill|happen|hit|take)|whether i (?:live|die|make it|wake up))\b",
            r"\bif (?:something|a car|a lorry|it|the current|my heart) (?:hit|hits|takes|took|gives|give|kills|killed) (?:me|out)\b",
            r"\bif (?:the current|it) takes me\b|\bif my heart's going to give out\b|\bgive out it can\b",
            r"\b(?:shut|closed) my eyes\b[^.]*\b(?:driv|motorway|road|wheel|just to see)\b|\b(?:driv\w*|motorway)\b[^.]*\bshut my eyes\b",
            r"\bwithout (?:looking|a seatbelt|my seatbelt|a helmet)\b|\bstopped wearing (?:my|a) (?:seatbelt|helmet)\b",
            r"\b(?:through|run|ran|running) red lights on purpose\b|\bon purpose\b[^.]*\b(?:lights|traffic|road)\b",
            r"\b(?:hope|hoping|hoped|want|wants) (?:that )?(?:there to be|one night|something) [^.]{0,40}\b(?:coming the other way|don't come back|dont come back|happens|hits me|goes wrong|kills me)\b",
            r"\bpart of me wants there to be\b",
            r"\bif i didn't wake up that'd be (?:ok|okay|fine)\b",
            r"\b(?:overtaking|overtake) on blind\b",
            r"\b(?:mixing|mixed|washing down|washed down) (?:it |them )?(?:with|whatever)\b[^.]*\b(?:pills|tramadol|medication|don't care|whatever happens)\b",
            r"\bi (?:just )?didn't care anymore\b|\bdon't really care what happens\b",
            r"\bstopped taking my insulin\b|\bnot taking my insulin\b",
        ],
    ));
    all.extend(frames(
        SelfInjury,
        &[
            r"\b(?:i|i've|i have|i've been|i keep|i)? ?(?:cut|cutting|burn(?:ed|t|ing)?|hit(?:ting)?|punch(?:ed|ing)?|scratch(?:ed|ing)?|bit(?:e|ing|ten)?|hurt(?:ing)?|harm(?:ed|ing)?|carv(?:e|ed|ing)|stab(?:bed|bing)?|pinch(?:ed|ing)?|starv(?:e|ed|ing)) myself\b(?! for| up about)",
            r"\bi cut (?:again|last night|myself|my (?:arm|arms|wrist|wrists|leg|legs|thigh|thighs|stomach))\b|\bcut again\b|\bcutting again\b",
            r"\b(?:cut|cutting|burn\w*|scratch\w*|carv\w*|pick\w*|bit\w*|bite) (?:at )?my (?:arms?|wrists?|legs?|thighs?|skin|stomach|forearm|scabs|hands?)\b[^.]*\b(?:bleed|bled|blood|marks|scars|blister|until|till|on purpose|sleeves|nobody sees)\b",
            r"\b(?:till|until|til) (?:they|it|i) (?:bleed|bled|bleeding|blister|blisters|split|bruise|leaves? marks)\b|\buntil (?:it|they) (?:leaves|left) marks\b",
            r"\bself[- ]?harm(?:ing)?\b|\bself[- ]?injur\w*\b",
            r"\b(?:punch|punching|punched|hit|hitting|bang|banging|banged|smash|smashed|smashing) (?:the wall|my head|walls|doors|the door)\b[^.]*\b(?:until|till|knuckles|lump|bled|split|bruise|a few times)\b|\b(?:smashed|banged|hit) my head against\b[^.]*\b(?:lump|times|bled|until)\b",
            r"\b(?:lighter|razor|blade|blades|compass|scissors|sharpener|ice|hot water|iron)\b[^.]*\b(?:on|to|into|against|with) my (?:skin|arm|arms|wrist|leg|legs|thigh|stomach)\b",
            r"\b(?:used|use|using) the (?:little )?(?:scissors|razor|blade|compass)\b",
            r"\b(?:relapsed|relapse)\b[^.]*\b(?:self-harm|cut|cutting|clean)\b|\b(?:months|weeks|days) clean\b",
            r"\b(?:don't|do not) deserve to (?:eat|have food)\b|\bpunishment\b[^.]*\b(?:eat|eaten|food)\b|\b(?:haven't eaten|not eaten)\b[^.]*\bpunish\w*\b",
            r"\bswallowed (?:a couple of |some )?(?:paper clips|batteries|pins|needles|glass|coins)\b",
            r"\bfresh (?:cuts|scars|wounds|marks)\b|\bhide (?:the|my) (?:cuts|scars|marks|burns)\b|\blong sleeves\b[^.]*\b(?:hide|summer|so nobody)\b",
            r"\bon purpose now\b|\bit makes the noise in my head stop\b|\bonly thing that calmed me down\b",
        ],
    ));
    all.extend(frames(
        HarmToOthers,
        &[
            r"\b(?:i'm|i am|i'll|i will|i'?m going to|i want to|i plan to|i'm planning to|i swear|i'd|i would|i could) (?:going to )?(?:really |finally )?(?:kill|stab|shoot|strangle|batter|beat up|beat|hurt|attack|poison|run over|shank|glass|burn|throw (?:acid|something) (?:at|in))\b[^.]{0,40}\b(?:him|her|them|that|my|the|someone|somebody|people|everyone)\b",
            r"\b(?:make|making) (?:him|her|them) (?:pay|suffer|bleed|regret)\b|\b(?:he's|she's|they're) going to feel it\b|\bgoing to regret how they\b",
            r"\b(?:got|have|bought|keep|carry|carrying) (?:a|the|my) (?:knife|gun|bat|crossbow|machete|blade|weapon|crowbar)\b[^.]*\b(?:for (?:him|her|them|the)|ready|if (?:he|she|they)|by the door|it's for)\b",
            r"\bknife ready\b|\bit's for the (?:lads|guy|man|men|people)\b",
            r"\b(?:i )?know where (?:he|she|they|my \w+|his|her) [^.]{0,30}\b(?:lives|live|works|parks)\b[^.]*\b(?:pay|sorry|going to|get)\b",
            r"\b(?:following|followed|watching) (?:him|her|them|my (?:old )?\w+) home\b|\bi know (?:his|her|their) routine\b",
            r"\b(?:pillow|hands) over (?:his|her|their) (?:face|mouth)\b|\bhow easy it would be to (?:hold|push|hit|strangle|smother)\b",
            r"\bput something in (?:his|her|their|my \w+'s) (?:drink|food|tea|coffee)\b",
            r"\b(?:dead man walking|won't see it coming|sort (?:him|her|them) out for good)\b",
            r"\bwait for (?:him|her|them) outside\b|\bthrow something in (?:his|her|their) face\b",
            r"\b(?:thoughts?|urges?|fantas\w+) (?:of|about) (?:hurting|killing|harming|stabbing|strangling|shooting) (?:him|her|them|my \w+|someone|somebody|people|others)\b",
        ],
    ));
    all.extend(frames(
        ChildAbuse,
        &[
            r"\b(?:my|our) (?:{CARER})\b[^.]{0,60}\b(?:{HURTS}|locks? me|locked me|touch(?:es|ed)? me|comes? (?:in|into) my room|makes? me|won't let me eat|doesn't feed|calls me)\b[^.]{0,30}\b(?:me|us|my|i)\b",
            r"\b(?:hits?|beats?|whips?) (?:me|us) with (?:his|her|a|the) (?:belt|spoon|wooden spoon|stick|cane|hand)\b|\bget hit with\b",
            r"\b(?:no food in the house|nobody feeds|hasn't been home since|left (?:me|us|the kids|the baby|her baby|my brothers) (?:alone|on my own|home alone))\b|\bleaving (?:her|his|the|my) baby alone\b",
            r"\b(?:little|the) (?:boy|girl|kid|child|baby) (?:next door|downstairs|upstairs|in (?:my|the) (?:street|flat))\b[^.]*\b(?:bruises|screams at|crying|hits|hit|marks|locked)\b",
            r"\b(?:shakes|shook|hits|hit|slaps|slapped|bruised|burned|burnt) (?:my|our|the|her|his) (?:daughter|son|baby|child|kids|children|boy|girl)\b",
            r"\bmarks on (?:her|his|my|the) (?:arms?|legs?|body|back)\b",
            r"\b(?:locks|locked) me in my room\b|\bpee in a bottle\b|\bkneel on rice\b",
            r"\bwatch stuff [^.]*\bisn't ok for kids\b|\bnot ok for kids\b",
            r"\b(?:held|holds) my hand on the (?:cooker|stove|hob|oven)\b|\btell school i did it myself\b",
            r"\bsame dirty nappy\b",
        ],
    ));
    all.extend(frames(
        IntimatePartnerViolence,
        &[
            r"\b(?:my|the) (?:{PARTNER})\b[^.]{0,60}\b(?:{HURTS}) (?:me|my)\b",
            r"\b(?:he|she)(?: just| always| then| has| had)? (?:{HURTS}) (?:me|my (?:head|face|neck|arm|arms|throat))\b(?! (?:up|with (?:a|an|the) (?:great|good|idea))| back)",
            r"\b(?:by|around|round) (?:the|my) (?:throat|neck)\b|\bsqueezed my neck\b|\bhands (?:round|around|on) my (?:neck|throat)\b",
            r"\b(?:checks|goes through|reads) my (?:phone|messages|texts)\b[^.]*\b(?:mental|angry|breaks?|broke|hit|hurt|punish)\b",
            r"\b(?:takes|took|keeps|has) my (?:bank card|money|wages|phone|keys|passport|insulin|car keys)\b[^.]*\b(?:gives me|show her|show him|can't leave|so i can't|won't give)\b",
            r"\bhides my (?:\w+ )?(?:and|&) my (?:passport|keys|phone)\b|\bhides my (?:insulin|passport|keys|phone|medication)\b",
            r"\b(?:if i (?:ever )?leave|if i go) (?:he|she)(?:'ll| will| would|'d) (?:find|kill|hurt)\b",
            r"\bno one will ever find my body\b",
            r"\b(?:won't|doesn't|does not|will not) let me (?:see|leave|go out|talk to|have|work|eat|sleep)\b",
            r"\b(?:put|puts) a tracker on\b|\bkeeps turning up at my\b",
            r"\blocked me out\b|\bpushed me down the stairs\b|\btold the hospital i tripped\b",
            r"\b(?:he|she) (?:said|says) i'd be nothing without (?:him|her)\b",
            r"\b(?:scared|afraid|terrified) of (?:him|her|my (?:{PARTNER}))\b|\bwalking on eggshells\b",
            r"\bsaid sorry and cried\b",
        ],
    ));
    all.extend(frames(
        SexualViolence,
        &[
            r"\b(?:didn't|wouldn't|did not|would not) stop when i said no\b|\bi said no\b[^.]*\b(?:but|kept going|anyway)\b|\bwouldn't take no\b",
            r"\b(?:raped|rape me|sexually assaulted|molested|groped|assaulted me)\b",
            r"\b(?:put|slipped) something in my drink\b|\bspiked my drink\b|\bdrink (?:was|got) spiked\b",
            r"\bwoke up [^.]*\b(?:didn't remember|don't remember|sore|naked|touching)\b",
            r"\b(?:makes|made|make|forced|forces|forcing) me (?:have sex|do stuff|do things|do sexual|touch|perform|sleep with)\b|\bforced my hand onto\b",
            r"\b(?:hand|hands) (?:down|up|inside) my (?:trousers|skirt|top|shirt|pants|knickers)\b|\bkeeps touching me\b",
            r"\bmy duty as a wife\b|\bwhen i'm asleep or don't want to\b",
            r"\bsend my (?:nudes|pictures|photos)\b|\bunless i (?:came round|slept with)\b",
            r"\btook the condom off\b|\bwithout (?:my )?consent\b(?! (?:,|i'm lucky))",
            r"\bcornered me\b",
            r"\bwouldn't unlock the doors?\b",
        ],
    ));
    all.extend(frames(
        DangerNow,
        &[
            r"\b(?:he's|she's|they're|he is|she is|they are|someone's|someone is|my (?:{PARTNER}|dad|brother-in-law|neighbour)(?:'s| is)) (?:outside|at the door|downstairs|in the (?:next room|house|hallway|car park)|here|coming|on (?:his|her|their) way|banging|trying to get in|looking for me|following me|blocking)\b",
            r"\b(?:i'm|i am) (?:hiding|locked in|trapped|under the bed|in the wardrobe)\b(?! in the toilets)",
            r"\bhiding in the (?:wardrobe|bathroom|cupboard|closet)\b",
            r"\b(?:he's|she's|they've|he has|she has) got a (?:knife|gun|weapon)\b|\bgot a knife\b",
            r"\b(?:can't|cannot) (?:get out|get away|get to my car)\b",
            r"\b(?:locked me in|pinned in|pinned me|won't let me out)\b",
            r"\b(?:followed|following) me home\b|\bplease help\b",
            r"\bkicked my door in\b|\btrying to get in\b|\bsmashing (?:stuff|things|the place)\b",
            r"\b(?:i'm|i am) (?:so )?(?:scared|terrified|afraid)\b[^.]*\b(?:for my life|he'll|she'll|alone|right now)\b|\bi'm alone\b[^.]*\bscared\b",
            r"\bhe'll hurt (?:the dog and )?me\b|\bif i go he'll\b",
            r"\bwith the belt\b[^.]*\b(?:looking for me|under the bed|hiding)\b",
        ],
    ));
    all
});

/// Words that turn a nearby risk phrase into its denial.
static NEGATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:not|never|no|don't|do not|didn't|did not|wouldn't|would not|won't|will not|isn't|aren't|haven't|have not|nor|without|deny|denies|nothing like)\b(?:[^\w,]+\w+){0,4}[^\w,]*$")
        .expect("negation pattern is valid")
});

/// Someone else's story, or the speaker's work, study or fiction: a risk
/// word in it is not the speaker's risk.
static OTHER_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\b(?:as a|i'm a|i am a|i work (?:as|in|at|on)|i volunteer|at the \w+ (?:office|ward) where i work|my (?:job|placement|shift|supervisor|psych|psychology))\b",
        r"[^.]*\b(?:nurse|paramedic|doctor|gp|counsellor|therapist|social worker|teacher|pharmacist|student|officer|volunteer|advocate|worker|handler|writer|researcher|coroner|carer|helpline|crisis line|a&e|ward|hospice|placement|training|module|calls?)\b",
        r"|\b(?:in|on) (?:the|that|this|a) (?:film|movie|book|novel|show|series|game|play|song|podcast|documentary|episode|drama|true-crime|news|article|poem|telly)\b",
        r"|\b(?:the|my|her|his) (?:character|narrator|dissertation|essay|module|degree|textbook|lyrics|storyline)\b",
        r"|\b(?:in|for) (?:gta|fortnite|call of duty|the game|my book club|a-level|a pub quiz|my dissertation)\b",
        r"|\b(?:a|the|my) (?:patient|client|caller|resident)s? (?:told|said|on my|was|were)\b",
        r"|\b(?:we|i) (?:did|had|learned|learnt|studied|watched|read) (?:a |about |our )?(?:module|training|lecture|documentary|the book|the film)\b",
        r"|\b(?:documentary|podcast|drama|novel|film|movie|telly|tv|true crime|memoir|book club|the story about|toxicologist|audit|prevention|awareness|assembly|designed them|for the group|in group|the school sent|a letter about)\b",
    ))
    .expect("context pattern is valid")
});

/// Another person is the one at risk or acting: "my friend told me she's
/// been thinking about ending her life".
static THIRD_PERSON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:her|his|their|herself|himself|themselves|your)\s+(?:own\s+)?life\b|\b(?:herself|himself|themselves)\b|\b(?:my|a|her|his|our) (?:friend|best friend|mate|cousin|uncle|aunt|nan|gran|grandad|grandma|daughter's|son's|colleague|neighbour|flatmate|brother|sister|dad|mum|father|mother)\b[^.]{0,30}\b(?:told me|said|tried|was|is|has been|had|jumped|died|took)\b")
        .expect("pattern is valid")
});

/// A past that is over: a time long ago and a sign it has passed.
static LONG_AGO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:years? ago|years back|as a (?:teenager|teen|kid|child)|when i was (?:young|younger|little|small|a teenager|a kid|\d+)|back (?:in|when|then)|in my (?:teens|twenties|youth)|used to|a long time ago|in (?:19|20)\d\d|at (?:uni|\d\d)|last year|the eighties|the 80s|the 90s|a decade|ten years|\d+ years)\b")
        .expect("pattern is valid")
});
static RESOLVED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:but (?:i'm|i've|now|these days|that was|i got|my family)|(?:been|i'm|feel|am) (?:much |so much |genuinely )?(?:well|better|fine|stable|good|okay|safe|free|clean|sober|calm)|haven't (?:since|in|done|gone|felt|had)|never again|nothing like that since|in a (?:good|better|different|completely different) place|different place now|got (?:proper )?(?:help|treatment)|recovered|made peace|faded|no longer|since\.?$|well (?:over )?a decade since|believe them now|bought most of it back|i've been well|been well for|now i volunteer|(?:it|things) (?:did|got better)|paid (?:it|them) off|things are (?:genuinely |much |so much )?better|doing (?:loads |much |so much )?better|doing (?:really )?well|trust the process|i'm okay|and i did|don't get (?:the )?urges)\b")
        .expect("pattern is valid")
});

/// Figures of speech that use risk words.
static IDIOM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:(?:is|are|was|were|it's|that's) killing me|going to kill me|will kill me|gonna kill me|'ll kill me|nearly killed me|dying (?:to|for)|die (?:of|from) (?:embarrassment|laughter|boredom|shame)|kill(?:ing)? time|could kill for|killed it|dead (?:tired|serious|on|weight of the)|to die for|drop[- ]dead|be the death of|take (?:good )?care of (?:myself|yourself|ourselves|me)|look(?:ing)? after myself|self-care|(?:rather|sooner) die than|could (?:have )?(?:strangle|murder|kill)|murder (?:a|about|him|her)|id murder|i'd murder|kicking myself|banged my head against the wall in|could have banged|absolutely raped in|violated me lol|end (?:it|things) with (?:him|her|my)|ending things with|end(?:ing)? (?:my|the) (?:gym|membership|contract|subscription|relationship)|end it with her|end it all, haha|end it all haha|going to end it all, haha)\b")
        .expect("idiom pattern is valid")
});

/// An ordinary life event the words of intent and plans are often about:
/// "I've made up my mind, I'm quitting my job"; "we've set the date".
static LIFE_EVENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:quit(?:ting)? (?:my|the) job|job|college|uni|divorce|emigrat\w*|wedding|venue|booked|registry office|tell my parents|switching to|leave him|leave her|boyfriend|girlfriend|the relationship|moving (?:house|to|abroad)|holiday|exams?|party|birthday|dinner|flight|christmas|marathon|chocolates|dating apps?|membership|the beach)\b")
        .expect("pattern is valid")
});

/// The categories whose words ordinary plans share.
fn about_plans(category: Category) -> bool {
    use Category::*;
    matches!(
        category,
        SuicidalIntent | SuicidePlan | PreparatoryBehaviour | SayingGoodbye | GivingAwayBelongings
    )
}

/// One frame that matched, with the words it matched.
pub struct Match {
    pub category: Category,
    pub words: String,
}

/// The frames that match a normalised utterance and are not taken back.
pub fn matches(normalized: &str) -> Vec<Match> {
    read(normalized).0
}

/// The utterance without its figures of speech ("take care of myself"),
/// which say nothing of risk to any layer.
pub fn without_idioms(normalized: &str) -> std::borrow::Cow<'_, str> {
    IDIOM.replace_all(normalized, " ")
}

/// The frames that match and are not taken back, and whether the speaker
/// denied one ("I don't want to die") while none stood: a denial the
/// learned layer must be very sure to overrule.
pub fn read(normalized: &str) -> (Vec<Match>, bool) {
    let mut denied = false;
    // Work, fiction or a past that is over set the whole utterance aside,
    // except a sentence where the speaker says what they want or are
    // doing now ("I'm a student and I want to kill myself").
    let set_aside = OTHER_CONTEXT.is_match(normalized)
        || (LONG_AGO.is_match(normalized) && RESOLVED.is_match(normalized));
    let mut found = Vec::new();
    for sentence in normalized.split(['.', '!', '?', ';', '\n']) {
        let sentence = IDIOM.replace_all(sentence, " ");
        if sentence.trim().is_empty() || (set_aside && !PRESENT_ME.is_match(&sentence)) {
            continue;
        }
        for frame in FRAMES.iter() {
            for m in frame.pattern.find_iter(&sentence) {
                // "I don't know why I want to die" denies nothing.
                let before = sentence[..m.start()].replace("don't know", "");
                let before = before.as_str();
                let after = &sentence[m.end()..];
                if NEGATION.is_match(before) {
                    denied = true;
                    continue;
                }
                if frame.unless.as_ref().is_some_and(|u| u.is_match(after)) {
                    continue;
                }
                let self_directed = !matches!(
                    frame.category.family(),
                    super::Family::Safeguarding | super::Family::HarmToOthers
                );
                if self_directed && THIRD_PERSON.is_match(&sentence) && !mentions_me(&sentence) {
                    continue;
                }
                if about_plans(frame.category) && LIFE_EVENT.is_match(&sentence) {
                    continue;
                }
                found.push(Match {
                    category: frame.category,
                    words: m.as_str().to_string(),
                });
            }
        }
    }
    let denied = denied && found.is_empty();
    (found, denied)
}

static ME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?:myself|my life|my own life|i'm (?:going|thinking)|i want|i've been thinking)\b",
    )
    .expect("pattern is valid")
});

/// The speaker's own wish or act, now.
static PRESENT_ME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:i (?:just |really |still )?want to|i'm going to|i'm (?:thinking|planning)|i've been (?:thinking|planning)|i keep (?:thinking|wanting)|right now|tonight|now i (?:just )?want)\b")
        .expect("pattern is valid")
});

fn mentions_me(sentence: &str) -> bool {
    ME.is_match(sentence)
}

/// Compiles the patterns (a few milliseconds) before they are needed.
pub fn warm_up() {
    LazyLock::force(&FRAMES);
    let _ = matches("warm up");
}
