//! Every word the block page shows, in English and Welsh, and the choice between them by
//! the browser's `Accept-Language`. One table per language, in one file, so a translator
//! sees every string together and the page code holds no text of its own.
//!
//! The words are for a pupil: no "matched rule", "policy group" or raw category names
//! (the category is told in plain words by [`Words::kind`]). Placeholders are `{site}`,
//! `{id}`, `{when}`; the caller escapes what it puts in them.
//!
//! TODO(translation): the Welsh strings were written by a developer from standard Welsh
//! usage (formal "chi" forms, as Welsh-medium school signage uses); a Welsh speaker
//! should review them before release.

use axum::http::{HeaderMap, header};

/// The strings of one language. Each field is named for the place it appears, and the
/// English table beside it says what it is: no per-field doc comments.
#[allow(missing_docs)]
#[derive(Debug)]
pub struct Words {
    /// The `lang` attribute of the page.
    pub lang: &'static str,
    pub blocked_title: &'static str,
    /// "The school has blocked {site}."
    pub blocked_intro: &'static str,
    pub site: &'static str,
    pub kind_of_site: &'static str,
    pub time: &'static str,
    pub device: &'static str,
    /// "{when}" is a sentence from [`Words::opens`].
    pub opens_heading: &'static str,
    pub your_school: &'static str,
    pub who_to_ask: &'static str,
    /// Said when no contact is configured.
    pub ask_your_teacher: &'static str,
    pub request_heading: &'static str,
    /// The request form's introduction when someone is told of each request.
    pub request_intro_notified: &'static str,
    /// ... and when requests wait until staff look.
    pub request_intro_quiet: &'static str,
    pub your_name: &'static str,
    pub why_need: &'static str,
    pub how_long: &'static str,
    pub days_hint: &'static str,
    pub request_button: &'static str,
    pub something_wrong: &'static str,
    pub report_link: &'static str,
    /// The allow-only (Key Stage 1) page.
    pub class_list_title: &'static str,
    pub class_list_sentence: &'static str,
    pub generic_title: &'static str,
    pub generic_text: &'static str,
    pub illegal_title: &'static str,
    pub illegal_text: &'static str,
    pub worried: &'static str,
    pub expired_title: &'static str,
    pub expired_text: &'static str,
    pub request_sent_title: &'static str,
    /// "{id}" and "{site}": someone has been told.
    pub request_sent_notified: &'static str,
    /// ... nobody is told: the request waits for staff.
    pub request_sent_quiet: &'static str,
    pub request_not_sent_title: &'static str,
    pub request_not_sent_text: &'static str,
    pub not_school_network: &'static str,
    pub too_many: &'static str,
    pub report_title: &'static str,
    pub report_intro: &'static str,
    pub report_address: &'static str,
    pub report_address_hint: &'static str,
    pub what_did_you_see: &'static str,
    pub report_button: &'static str,
    pub report_sent_title: &'static str,
    /// "{id}".
    pub report_sent_text: &'static str,
    pub report_not_sent_title: &'static str,
    pub report_not_sent_text: &'static str,
    /// Said of a category with no plain words of its own.
    pub kind_unknown: &'static str,
    /// "This site" (the subject of [`Words::opens`] when the kind has no plural).
    pub this_site_opens: &'static str,
    weekdays: [&'static str; 7],
    /// The weekday after "on" (Welsh mutates: "dydd Llun" → "ddydd Llun").
    on_weekdays: [&'static str; 7],
    months: [&'static str; 12],
    today: &'static str,
    tomorrow: &'static str,
    /// "{subject} {when}.": the sentence of [`Words::opens`].
    opens: &'static str,
    /// "at {time}" / "am {time}".
    at: &'static str,
}

/// English (the default).
pub static EN: Words = Words {
    lang: "en",
    blocked_title: "This site is blocked",
    blocked_intro: "The school has blocked <strong>{site}</strong>.",
    site: "Site",
    kind_of_site: "Kind of site",
    time: "Time",
    device: "Device",
    opens_heading: "When can I use it?",
    your_school: "Your school",
    who_to_ask: "Who to ask",
    ask_your_teacher: "Ask your teacher.",
    request_heading: "Ask for access",
    request_intro_notified: "If you need this site for your work or studies, ask for it to be unblocked for a while. The school's staff are told about your request straight away.",
    request_intro_quiet: "If you need this site for your work or studies, ask for it to be unblocked for a while. Your request is kept until a member of staff looks at it, so tell them if it is urgent.",
    your_name: "Your name",
    why_need: "Why do you need it?",
    how_long: "For how long (days)",
    days_hint: "From 1 to 30 days.",
    request_button: "Request access",
    something_wrong: "Something wrong?",
    report_link: "Report a mistake, or a site that should be blocked",
    class_list_title: "Ask your teacher",
    class_list_sentence: "This website isn't on your class's list. Ask your teacher.",
    generic_title: "School web filter",
    generic_text: "This is the school's web filter. If a site did not load, try reloading it.",
    illegal_title: "Page not available",
    illegal_text: "Access to this page has been blocked because it may contain content that is illegal. The school's safeguarding lead is told about attempts to reach such pages.",
    worried: "If you are worried about something you have seen online, talk to a member of staff you trust.",
    expired_title: "Form expired",
    expired_text: "Please go back, reload the page and send the form again.",
    request_sent_title: "Request sent",
    request_sent_notified: "Your request <strong>#{id}</strong> to use <strong>{site}</strong> has been sent to the school's technician and safeguarding lead. You will be able to use the site if it is approved.",
    request_sent_quiet: "Your request <strong>#{id}</strong> to use <strong>{site}</strong> has been saved for the school's staff to look at. Nobody is told about it straight away, so ask a member of staff if it is urgent. You will be able to use the site if it is approved.",
    request_not_sent_title: "Request not sent",
    request_not_sent_text: "Please fill in your name (up to 100 characters) and the reason (up to 1,000), and try again. Sites of some kinds can never be unblocked.",
    not_school_network: "This device is not on a school network. Please ask a member of staff.",
    too_many: "Too many requests and reports have been sent from this device. Please try again later.",
    report_title: "Report a site",
    report_intro: "Tell the school about a site that should be blocked, or about a block that is a mistake.",
    report_address: "Address of the site",
    report_address_hint: "For example www.example.com or the whole address from the address bar.",
    what_did_you_see: "What did you see?",
    report_button: "Send report",
    report_sent_title: "Report sent",
    report_sent_text: "Thank you. Report <strong>#{id}</strong> has been sent to the school.",
    report_not_sent_title: "Report not sent",
    report_not_sent_text: "Please give the site's address and your name (up to 100 characters).",
    kind_unknown: "Blocked by the school",
    this_site_opens: "This site opens",
    weekdays: [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ],
    on_weekdays: [
        "on Monday",
        "on Tuesday",
        "on Wednesday",
        "on Thursday",
        "on Friday",
        "on Saturday",
        "on Sunday",
    ],
    months: [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    today: "today",
    tomorrow: "tomorrow",
    opens: "{subject} {when}.",
    at: "at {time}",
};

/// Welsh (Cymraeg). A Welsh speaker should review these (see the module comment).
pub static CY: Words = Words {
    lang: "cy",
    blocked_title: "Mae'r wefan hon wedi'i rhwystro",
    blocked_intro: "Mae'r ysgol wedi rhwystro <strong>{site}</strong>.",
    site: "Gwefan",
    kind_of_site: "Math o wefan",
    time: "Amser",
    device: "Dyfais",
    opens_heading: "Pryd galla i ei defnyddio?",
    your_school: "Eich ysgol",
    who_to_ask: "Pwy i'w holi",
    ask_your_teacher: "Gofynnwch i'ch athro.",
    request_heading: "Gofyn am gael defnyddio'r wefan",
    request_intro_notified: "Os oes angen y wefan hon arnoch chi ar gyfer eich gwaith, gofynnwch am ei dadrwystro am ychydig. Bydd staff yr ysgol yn cael gwybod am eich cais ar unwaith.",
    request_intro_quiet: "Os oes angen y wefan hon arnoch chi ar gyfer eich gwaith, gofynnwch am ei dadrwystro am ychydig. Bydd eich cais yn cael ei gadw nes bydd aelod o staff yn edrych arno, felly dywedwch wrthyn nhw os yw'n frys.",
    your_name: "Eich enw",
    why_need: "Pam mae ei hangen arnoch chi?",
    how_long: "Am faint o amser (diwrnodau)",
    days_hint: "Rhwng 1 a 30 diwrnod.",
    request_button: "Gofyn am gael mynediad",
    something_wrong: "Rhywbeth o'i le?",
    report_link: "Rhoi gwybod am gamgymeriad, neu am wefan a ddylai gael ei rhwystro",
    class_list_title: "Gofynnwch i'ch athro",
    class_list_sentence: "Dydy'r wefan hon ddim ar restr eich dosbarth. Gofynnwch i'ch athro.",
    generic_title: "Hidlydd gwe'r ysgol",
    generic_text: "Dyma hidlydd gwe'r ysgol. Os na wnaeth gwefan lwytho, ceisiwch ei llwytho eto.",
    illegal_title: "Dydy'r dudalen ddim ar gael",
    illegal_text: "Mae'r dudalen hon wedi'i rhwystro oherwydd gallai gynnwys deunydd anghyfreithlon. Mae arweinydd diogelu'r ysgol yn cael gwybod am ymdrechion i gyrraedd tudalennau fel hyn.",
    worried: "Os ydych chi'n poeni am rywbeth rydych chi wedi'i weld ar-lein, siaradwch ag aelod o staff rydych chi'n ymddiried ynddo.",
    expired_title: "Mae'r ffurflen wedi dod i ben",
    expired_text: "Ewch yn ôl, llwythwch y dudalen eto ac anfonwch y ffurflen eto.",
    request_sent_title: "Cais wedi'i anfon",
    request_sent_notified: "Mae eich cais <strong>#{id}</strong> i ddefnyddio <strong>{site}</strong> wedi'i anfon at dechnegydd ac arweinydd diogelu'r ysgol. Byddwch chi'n gallu defnyddio'r wefan os caiff y cais ei gymeradwyo.",
    request_sent_quiet: "Mae eich cais <strong>#{id}</strong> i ddefnyddio <strong>{site}</strong> wedi'i gadw i staff yr ysgol edrych arno. Does neb yn cael gwybod amdano ar unwaith, felly gofynnwch i aelod o staff os yw'n frys. Byddwch chi'n gallu defnyddio'r wefan os caiff y cais ei gymeradwyo.",
    request_not_sent_title: "Heb anfon y cais",
    request_not_sent_text: "Rhowch eich enw (hyd at 100 nod) a'r rheswm (hyd at 1,000), a rhowch gynnig arall arni. Does dim modd dadrwystro rhai mathau o wefannau byth.",
    not_school_network: "Dydy'r ddyfais hon ddim ar un o rwydweithiau'r ysgol. Gofynnwch i aelod o staff.",
    too_many: "Mae gormod o geisiadau ac adroddiadau wedi'u hanfon o'r ddyfais hon. Rhowch gynnig arall arni yn nes ymlaen.",
    report_title: "Rhoi gwybod am wefan",
    report_intro: "Dywedwch wrth yr ysgol am wefan a ddylai gael ei rhwystro, neu am rwystr sy'n gamgymeriad.",
    report_address: "Cyfeiriad y wefan",
    report_address_hint: "Er enghraifft www.example.com, neu'r cyfeiriad cyfan o'r bar cyfeiriad.",
    what_did_you_see: "Beth welsoch chi?",
    report_button: "Anfon",
    report_sent_title: "Adroddiad wedi'i anfon",
    report_sent_text: "Diolch. Mae adroddiad <strong>#{id}</strong> wedi'i anfon at yr ysgol.",
    report_not_sent_title: "Heb anfon yr adroddiad",
    report_not_sent_text: "Rhowch gyfeiriad y wefan a'ch enw (hyd at 100 nod).",
    kind_unknown: "Wedi'i rhwystro gan yr ysgol",
    this_site_opens: "Bydd y wefan hon ar agor",
    weekdays: [
        "dydd Llun",
        "dydd Mawrth",
        "dydd Mercher",
        "dydd Iau",
        "dydd Gwener",
        "dydd Sadwrn",
        "dydd Sul",
    ],
    on_weekdays: [
        "ddydd Llun",
        "ddydd Mawrth",
        "ddydd Mercher",
        "ddydd Iau",
        "ddydd Gwener",
        "ddydd Sadwrn",
        "ddydd Sul",
    ],
    months: [
        "Ionawr",
        "Chwefror",
        "Mawrth",
        "Ebrill",
        "Mai",
        "Mehefin",
        "Gorffennaf",
        "Awst",
        "Medi",
        "Hydref",
        "Tachwedd",
        "Rhagfyr",
    ],
    today: "heddiw",
    tomorrow: "yfory",
    opens: "{subject} {when}.",
    at: "am {time}",
};

/// Plain words for the categories a school commonly blocks: (category, English kind,
/// English "… sites open", Welsh kind, Welsh "bydd … ar agor"). A category not here is
/// told by its configured description (the school's own words), else [`Words::kind_unknown`].
const KINDS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "adult",
        "Adult content",
        "Adult sites open",
        "Cynnwys i oedolion",
        "Bydd gwefannau i oedolion ar agor",
    ),
    (
        "gambling",
        "Gambling",
        "Gambling sites open",
        "Gamblo",
        "Bydd gwefannau gamblo ar agor",
    ),
    (
        "games",
        "Games",
        "Games sites open",
        "Gemau",
        "Bydd gwefannau gemau ar agor",
    ),
    (
        "social",
        "Social media",
        "Social media sites open",
        "Cyfryngau cymdeithasol",
        "Bydd gwefannau cyfryngau cymdeithasol ar agor",
    ),
    (
        "video",
        "Video",
        "Video sites open",
        "Fideo",
        "Bydd gwefannau fideo ar agor",
    ),
    (
        "streaming",
        "Video and TV",
        "Video and TV sites open",
        "Fideo a theledu",
        "Bydd gwefannau fideo a theledu ar agor",
    ),
    (
        "shopping",
        "Shopping",
        "Shopping sites open",
        "Siopa",
        "Bydd gwefannau siopa ar agor",
    ),
    (
        "chat",
        "Chatting with strangers",
        "Chat sites open",
        "Sgwrsio â dieithriaid",
        "Bydd gwefannau sgwrsio ar agor",
    ),
    (
        "dating",
        "Dating",
        "Dating sites open",
        "Canlyn",
        "Bydd gwefannau canlyn ar agor",
    ),
    (
        "ai",
        "AI chatbots",
        "AI chatbots open",
        "Sgwrsfotiau AI",
        "Bydd sgwrsfotiau AI ar agor",
    ),
    (
        "malware",
        "Harmful software (viruses)",
        "Harmful sites open",
        "Meddalwedd niweidiol (firysau)",
        "Bydd y wefan hon ar agor",
    ),
    (
        "phishing",
        "A fake site that may steal passwords",
        "This site opens",
        "Gwefan ffug a allai ddwyn cyfrineiriau",
        "Bydd y wefan hon ar agor",
    ),
    (
        "weapons",
        "Weapons",
        "Weapons sites open",
        "Arfau",
        "Bydd gwefannau arfau ar agor",
    ),
    (
        "drugs",
        "Drugs",
        "Drugs sites open",
        "Cyffuriau",
        "Bydd gwefannau cyffuriau ar agor",
    ),
    (
        "doh",
        "A way round the school's filter",
        "This site opens",
        "Ffordd o osgoi hidlydd yr ysgol",
        "Bydd y wefan hon ar agor",
    ),
    (
        "bypass",
        "A way round the school's filter",
        "This site opens",
        "Ffordd o osgoi hidlydd yr ysgol",
        "Bydd y wefan hon ar agor",
    ),
    (
        "vpn",
        "A way round the school's filter",
        "This site opens",
        "Ffordd o osgoi hidlydd yr ysgol",
        "Bydd y wefan hon ar agor",
    ),
    (
        "proxy",
        "A way round the school's filter",
        "This site opens",
        "Ffordd o osgoi hidlydd yr ysgol",
        "Bydd y wefan hon ar agor",
    ),
    (
        "local",
        "Blocked by the school",
        "This site opens",
        "Wedi'i rhwystro gan yr ysgol",
        "Bydd y wefan hon ar agor",
    ),
];

impl Words {
    fn is_welsh(&self) -> bool {
        self.lang == "cy"
    }

    /// The kind of site in plain words. `service` is a catalogue service's title
    /// ("TikTok"), `description` the category's configured description.
    pub fn kind(&self, category: &str, service: Option<&str>, description: &str) -> String {
        if let Some(title) = service {
            return title.to_owned();
        }
        match KINDS.iter().find(|k| k.0 == category) {
            Some(k) if self.is_welsh() => k.3.to_owned(),
            Some(k) => k.1.to_owned(),
            None if !description.trim().is_empty() => description.trim().to_owned(),
            None => self.kind_unknown.to_owned(),
        }
    }

    /// "Games sites open at 12:00 today." / "Bydd gwefannau gemau ar agor ddydd Llun am
    /// 12:00." `opens` is in the school's zone; `now` too.
    pub fn opens(
        &self,
        category: &str,
        service: Option<&str>,
        opens: &jiff::Zoned,
        now: &jiff::Zoned,
    ) -> String {
        let subject = match (service, KINDS.iter().find(|k| k.0 == category)) {
            (Some(title), _) if self.is_welsh() => format!("Bydd {title} ar agor"),
            (Some(title), _) => format!("{title} opens"),
            (None, Some(k)) if self.is_welsh() => k.4.to_owned(),
            (None, Some(k)) => k.2.to_owned(),
            (None, None) => self.this_site_opens.to_owned(),
        };
        let time = self
            .at
            .replace("{time}", &opens.strftime("%H:%M").to_string());
        let when = match (opens.date() - now.date()).get_days() {
            0 => format!("{time} {}", self.today),
            1 => format!("{time} {}", self.tomorrow),
            _ => format!("{} {time}", self.on_weekday(opens)),
        };
        self.opens
            .replace("{subject}", &subject)
            .replace("{when}", &when)
    }

    fn on_weekday(&self, z: &jiff::Zoned) -> &'static str {
        self.on_weekdays[z.weekday().to_monday_zero_offset() as usize]
    }

    /// "Monday 23 November 2026, 10:00 GMT" / "dydd Llun 23 Tachwedd 2026, 10:00 GMT".
    pub fn date_time(&self, z: &jiff::Zoned) -> String {
        let day = self.weekdays[z.weekday().to_monday_zero_offset() as usize];
        let month = self.months[(z.month() as usize).saturating_sub(1) % 12];
        format!(
            "{day} {} {month} {}, {}",
            z.day(),
            z.year(),
            z.strftime("%H:%M %Z")
        )
    }
}

/// Longest `Accept-Language` header read; a longer one is ignored (English).
const MAX_ACCEPT_LANGUAGE: usize = 1024;
/// Most language ranges read from it.
const MAX_RANGES: usize = 32;

/// The page's language: Welsh when the browser prefers `cy` to `en` by q-value (the first
/// listed wins a tie), else English.
pub fn negotiate(headers: &HeaderMap) -> &'static Words {
    let Some(value) = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_ACCEPT_LANGUAGE)
    else {
        return &EN;
    };
    let (mut cy, mut en) = (None::<(f32, usize)>, None::<(f32, usize)>);
    for (i, range) in value.split(',').take(MAX_RANGES).enumerate() {
        let mut parts = range.split(';');
        let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .filter(|q| (0.0..=1.0).contains(q))
            .unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or_default();
        let slot = match primary {
            "cy" => &mut cy,
            "en" => &mut en,
            _ => continue,
        };
        if slot.is_none_or(|(best, _)| q > best) {
            *slot = Some((q, i));
        }
    }
    match (cy, en) {
        (Some((q, _)), _) if q <= 0.0 => &EN,
        (Some(_), None) => &CY,
        (Some((qc, ic)), Some((qe, ie))) if qc > qe || (qc == qe && ic < ie) => &CY,
        _ => &EN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn lang(v: &str) -> &'static str {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_str(v).unwrap());
        negotiate(&h).lang
    }

    #[test]
    fn welsh_only_when_preferred() {
        assert_eq!(negotiate(&HeaderMap::new()).lang, "en");
        assert_eq!(lang("cy"), "cy");
        assert_eq!(lang("cy-GB,cy;q=0.9,en;q=0.8"), "cy");
        assert_eq!(lang("en-GB,en;q=0.9,cy;q=0.8"), "en");
        assert_eq!(lang("en;q=0.5,cy;q=0.7"), "cy");
        assert_eq!(lang("cy, en"), "cy", "a tie goes to the first listed");
        assert_eq!(lang("en, cy"), "en");
        assert_eq!(lang("cy;q=0"), "en", "q=0 means not acceptable");
        assert_eq!(lang("fr, de"), "en");
        assert_eq!(lang("cy;q=banana"), "cy", "a bad q reads as 1");
        assert_eq!(lang(&format!("{},cy", "x".repeat(2000))), "en");
    }

    fn at(s: &str) -> jiff::Zoned {
        format!("{s}[Europe/London]").parse().unwrap()
    }

    #[test]
    fn opening_times_in_words() {
        let now = at("2026-11-23T10:00"); // a Monday
        assert_eq!(
            EN.opens("games", None, &at("2026-11-23T12:00"), &now),
            "Games sites open at 12:00 today."
        );
        assert_eq!(
            EN.opens("games", None, &at("2026-11-24T12:00"), &now),
            "Games sites open at 12:00 tomorrow."
        );
        assert_eq!(
            EN.opens("local", None, &at("2026-11-27T16:00"), &now),
            "This site opens on Friday at 16:00."
        );
        assert_eq!(
            CY.opens("games", None, &at("2026-11-23T12:00"), &now),
            "Bydd gwefannau gemau ar agor am 12:00 heddiw."
        );
        assert_eq!(
            CY.opens("games", None, &at("2026-11-27T12:00"), &now),
            "Bydd gwefannau gemau ar agor ddydd Gwener am 12:00."
        );
        assert_eq!(
            EN.opens("service:x", Some("TikTok"), &at("2026-11-24T12:00"), &now),
            "TikTok opens at 12:00 tomorrow."
        );
    }

    #[test]
    fn kinds_are_plain_words() {
        assert_eq!(EN.kind("social", None, ""), "Social media");
        assert_eq!(CY.kind("social", None, ""), "Cyfryngau cymdeithasol");
        assert_eq!(
            EN.kind("ks2-extra", None, "Sites for older pupils"),
            "Sites for older pupils"
        );
        assert_eq!(EN.kind("ks2-extra", None, ""), "Blocked by the school");
        assert_eq!(EN.kind("service:tiktok", Some("TikTok"), ""), "TikTok");
        assert_eq!(
            CY.date_time(&at("2026-11-23T10:00")),
            "dydd Llun 23 Tachwedd 2026, 10:00 GMT"
        );
    }
}
