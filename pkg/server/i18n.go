package server

import (
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The restore page speaks the languages of web/i18n: one JSON catalogue
// per language (its name in itself, its writing direction, month and
// weekday names, and the page's messages as fmt formats). English is the
// reference: a test checks that every catalogue has exactly its keys with
// the same format verbs.
//
// No i18n library: six fixed languages, a dozen plural-free sentences and
// a date in a sentence need no more than this file, and the one part a
// library would add, Accept-Language matching, is a small parser here
// (golang.org/x/text/language would also pick a language for tags we do
// not have, such as "zh", by "confidence", where we want the next one the
// browser lists).

// locale is one language of the page.
type locale struct {
	Tag  string // "es"
	Name string // "Español", in the language itself
	Dir  string // "ltr" or "rtl"

	firstDay string // the 1st of a month, where it is not "1" (French "1er")
	months   [12]string
	weekdays [7]string // Sunday first, as time.Weekday
	msgs     map[string]string
}

// catalogue is the form of web/i18n/*.json.
type catalogue struct {
	Name     string            `json:"name"`
	Dir      string            `json:"dir"`
	FirstDay string            `json:"first_day,omitempty"`
	Months   []string          `json:"months"`
	Weekdays []string          `json:"weekdays"`
	Messages map[string]string `json:"messages"`
}

// localeTags lists the languages in the order of the page's switch; the
// first is the default.
var localeTags = []string{"en", "es", "fr", "pt", "ar", "sw"}

// locales holds the page's languages, read once from the embedded
// catalogues (read-only after, like the templates).
var locales = mustLoadLocales()

func mustLoadLocales() map[string]*locale {
	ls, err := loadLocales()
	if err != nil {
		panic(err)
	}
	return ls
}

func loadLocales() (map[string]*locale, error) {
	out := make(map[string]*locale, len(localeTags))
	for _, tag := range localeTags {
		b, err := webFiles.ReadFile("web/i18n/" + tag + ".json")
		if err != nil {
			return nil, err
		}
		var c catalogue
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("web/i18n/%s.json: %w", tag, err)
		}
		if len(c.Months) != 12 || len(c.Weekdays) != 7 || c.Name == "" || (c.Dir != "ltr" && c.Dir != "rtl") {
			return nil, fmt.Errorf("web/i18n/%s.json: needs a name, dir ltr or rtl, 12 months and 7 weekdays", tag)
		}
		l := &locale{Tag: tag, Name: c.Name, Dir: c.Dir, firstDay: c.FirstDay, msgs: c.Messages}
		copy(l.months[:], c.Months)
		copy(l.weekdays[:], c.Weekdays)
		out[tag] = l
	}
	return out, nil
}

func defaultLocale() *locale { return locales[localeTags[0]] }

// T returns the message key in l's language, formatted with args; a key
// the catalogue lacks falls back to English, then to the key itself.
func (l *locale) T(key string, args ...any) string {
	f, ok := l.msgs[key]
	if !ok {
		if f, ok = defaultLocale().msgs[key]; !ok {
			return key
		}
	}
	if len(args) == 0 {
		return f
	}
	return fmt.Sprintf(f, args...)
}

// TB is T for HTML with the arguments in bold (for button names in a
// sentence): the message and its arguments are escaped.
func (l *locale) TB(key string, args ...string) template.HTML {
	f := l.T(key)
	bold := make([]any, len(args))
	for i, a := range args {
		bold[i] = "<b>" + html.EscapeString(a) + "</b>"
	}
	return template.HTML(fmt.Sprintf(html.EscapeString(f), bold...))
}

// Day is a date with its weekday: "Monday 2 January 2026", "lunes, 2 de
// enero de 2026".
func (l *locale) Day(t time.Time) string {
	return l.T("date.day", l.weekdays[t.Weekday()], l.dayOfMonth(t), l.months[t.Month()-1], t.Year())
}

// Date is a date without weekday: "2 January 2026".
func (l *locale) Date(t time.Time) string {
	return l.T("date.date", l.dayOfMonth(t), l.months[t.Month()-1], t.Year())
}

func (l *locale) dayOfMonth(t time.Time) string {
	if t.Day() == 1 && l.firstDay != "" {
		return l.firstDay
	}
	return strconv.Itoa(t.Day())
}

// Activity is the name of a Sugar activity (as [journal.ActivityName]
// gives it in English) as the children know it in their language: "Write"
// is "Escribir" in Spanish. Names the catalogue lacks stay as they are.
func (l *locale) Activity(name string) string {
	if m, ok := l.msgs["activity."+name]; ok {
		return m
	}
	return name
}

// DateTime is a date and a 24-hour clock time: "2 January 2026, 15:04".
func (l *locale) DateTime(t time.Time) string {
	return l.T("date.datetime", l.Date(t), t.Format("15:04"))
}

// DayTime is a date with its weekday and a clock time: "Monday 2 January
// 2026, 15:04".
func (l *locale) DayTime(t time.Time) string {
	return l.T("date.datetime", l.Day(t), t.Format("15:04"))
}

// negotiate picks the page's language from an Accept-Language header
// (RFC 9110 12.5.4): the tags in order of their quality (q=0 means "not
// this one"; ties keep the browser's order), each matched by its primary
// language so that es-419 is es and pt-BR is pt; the first one the page
// speaks wins, else English. Malformed parts are skipped.
func negotiate(header string) *locale {
	type pref struct {
		tag string
		q   float64
	}
	var prefs []pref
	for i, part := range strings.Split(header, ",") {
		if i >= 32 {
			break // nobody speaks more; a long header costs no more
		}
		tag, params, _ := strings.Cut(part, ";")
		tag = strings.ToLower(strings.TrimSpace(tag))
		q := 1.0
		if params != "" {
			k, v, ok := strings.Cut(strings.TrimSpace(params), "=")
			if !ok || strings.TrimSpace(k) != "q" {
				continue
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || !(f >= 0 && f <= 1) { // NaN too
				continue
			}
			q = f
		}
		if q == 0 || tag == "" {
			continue
		}
		primary, _, _ := strings.Cut(strings.ReplaceAll(tag, "_", "-"), "-")
		prefs = append(prefs, pref{primary, q})
	}
	slices.SortStableFunc(prefs, func(a, b pref) int {
		switch {
		case a.q > b.q:
			return -1
		case a.q < b.q:
			return 1
		}
		return 0
	})
	for _, p := range prefs {
		if l, ok := locales[p.tag]; ok {
			return l
		}
	}
	return defaultLocale()
}

// langParam is the query parameter of the page's language switch. The
// signed link is the path: the parameter is outside what is signed, so
// choosing a language keeps the link working.
const langParam = "lang"

// requestLocale is the language of a request: ?lang= if it names one of
// the page's languages exactly (anything else is ignored, never echoed),
// else Accept-Language. chosen reports a choice by ?lang=, which the
// page's own links then carry on.
func requestLocale(r *http.Request) (l *locale, chosen bool) {
	if l, ok := locales[r.URL.Query().Get(langParam)]; ok {
		return l, true
	}
	return negotiate(r.Header.Get("Accept-Language")), false
}
