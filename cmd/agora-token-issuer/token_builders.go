package main

import (
	"flag"
	"fmt"
	"strconv"

	"agoratokens/accesstoken"
)

// builderFlags are the flags every convenience builder shares.
type builderFlags struct {
	appID    *string
	certFile *string
	expire   lifetime
}

func addBuilderFlags(fs *flag.FlagSet) *builderFlags {
	b := &builderFlags{
		appID:    fs.String("app-id", "", "Agora App `ID` (default $AGORA_APP_ID)"),
		certFile: fs.String("certificate-file", "", "`file` holding the App Certificate (default $AGORA_APP_CERTIFICATE)"),
	}
	fs.Var(&b.expire, "expire", "token lifetime `S`: seconds or a duration such as 1h, at most 24h (required)")
	return b
}

// builder checks the shared flags and returns a Builder for them.
func (f *builderFlags) builder(env *tokenEnv) (*accesstoken.Builder, error) {
	if !f.expire.set {
		return nil, usagef("--expire is required")
	}
	id, err := appID(*f.appID, true)
	if err != nil {
		return nil, err
	}
	cert, err := signingCertificate(*f.certFile, env.stderr)
	if err != nil {
		return nil, err
	}
	return &accesstoken.Builder{AppID: id, Certificate: cert.cert, Now: env.now}, nil
}

// emit prints a built token or wraps the builder's error.
func emit(env *tokenEnv, token string, err error) error {
	if err != nil {
		return fmt.Errorf("build token: %w", err)
	}
	_, err = fmt.Fprintln(env.stdout, token)
	return err
}

// parseFlagsOnly parses args for a command that takes flags and no
// positional argument.
func parseFlagsOnly(fs *flag.FlagSet, args []string) error {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	return nil
}

func tokenRTC(env *tokenEnv, args []string) error {
	fs := newFlagSet(env, "rtc", "rtc --channel C (--uid N | --account A) --role publisher|subscriber --expire S [--privilege-expire S] [--rtm]\n\n"+
		"Build an RTC token, as Agora's BuildTokenWithUid / BuildTokenWithUserAccount.\n"+
		"A publisher may join and publish audio, video and data; a subscriber may\n"+
		"only join. --rtm also grants RTM login as the same account (BuildTokenWithRtm).")
	bf := addBuilderFlags(fs)
	channel := fs.String("channel", "", "channel `name` (required)")
	uid := fs.String("uid", "", "numeric uid `N`, 0..4294967295 (0: any uid)")
	account := fs.String("account", "", "user `account` (string uid)")
	role := fs.String("role", "", "publisher or subscriber (required)")
	var privExpire lifetime
	fs.Var(&privExpire, "privilege-expire", "lifetime `S` of the join and publish privileges (default --expire)")
	withRTM := fs.Bool("rtm", false, "also grant RTM login as the same uid or account")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if *channel == "" {
		return usagef("--channel is required")
	}
	// "*" (any channel) is legal in a token when asked for explicitly.
	if *channel != accesstoken.WildcardChannel {
		if err := accesstoken.ValidateChannel(*channel); err != nil {
			return fmt.Errorf("--channel: %w", err)
		}
	}
	if isSet(fs, "uid") == isSet(fs, "account") {
		return usagef("give exactly one of --uid and --account")
	}
	acct := *account
	if isSet(fs, "uid") {
		n, err := strconv.ParseUint(*uid, 10, 32)
		if err != nil {
			return usagef("--uid %q is not a number in 0..4294967295", *uid)
		}
		acct = accesstoken.UIDString(uint32(n))
	} else if acct == "" {
		return usagef("--account is empty (use --uid 0 for any uid)")
	}
	if *role == "" {
		return usagef("--role is required (publisher or subscriber)")
	}
	r, err := accesstoken.ParseRole(*role)
	if err != nil {
		return usagef("--role: %v", err)
	}
	b, err := bf.builder(env)
	if err != nil {
		return err
	}
	pe := bf.expire.secs
	if privExpire.set {
		pe = privExpire.secs
	}
	if *withRTM {
		if acct == "" {
			return usagef("--rtm needs a uid other than 0 or an account: RTM logs in as it")
		}
		tok, err := b.RTCAndRTM(*channel, acct, r, bf.expire.secs, pe)
		return emit(env, tok, err)
	}
	tok, err := b.RTCWithAccount(*channel, acct, r, bf.expire.secs, pe)
	return emit(env, tok, err)
}

func tokenRTM(env *tokenEnv, args []string) error {
	fs := newFlagSet(env, "rtm", "rtm --user U [--stream-channel C] --expire S\n\n"+
		"Build an RTM login token. --stream-channel also grants joining that RTM\n"+
		"stream channel.")
	bf := addBuilderFlags(fs)
	user := fs.String("user", "", "RTM user `id` (required)")
	stream := fs.String("stream-channel", "", "RTM stream `channel` to grant (* for any)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if *user == "" {
		return usagef("--user is required")
	}
	if err := accesstoken.ValidateAccount("--user", *user); err != nil {
		return err
	}
	b, err := bf.builder(env)
	if err != nil {
		return err
	}
	tok, err := b.RTM(*user, *stream, bf.expire.secs)
	return emit(env, tok, err)
}

func tokenChat(env *tokenEnv, args []string) error {
	fs := newFlagSet(env, "chat", "chat (--user U | --app) --expire S\n\n"+
		"Build an Agora Chat user token or app token.")
	bf := addBuilderFlags(fs)
	user := fs.String("user", "", "Chat user `id`")
	app := fs.Bool("app", false, "build an app token")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	if *app == isSet(fs, "user") {
		return usagef("give exactly one of --user and --app")
	}
	if !*app && *user == "" {
		return usagef("--user is empty")
	}
	if err := accesstoken.ValidateAccount("--user", *user); err != nil {
		return err
	}
	b, err := bf.builder(env)
	if err != nil {
		return err
	}
	if *app {
		tok, err := b.ChatApp(bf.expire.secs)
		return emit(env, tok, err)
	}
	tok, err := b.ChatUser(*user, bf.expire.secs)
	return emit(env, tok, err)
}

func tokenEducation(env *tokenEnv, args []string) error {
	fs := newFlagSet(env, "education", "education (--app | --user U | --room R --user U --role N) --expire S\n\n"+
		"Build a Flexible Classroom (APaaS) token: an app token, a user token,\n"+
		"or a room-user token (room user + RTM login + Chat user), as Agora's\n"+
		"EducationTokenBuilder2.")
	bf := addBuilderFlags(fs)
	app := fs.Bool("app", false, "build an app token")
	user := fs.String("user", "", "user `uuid`")
	room := fs.String("room", "", "room `uuid` (with --user and --role: a room-user token)")
	role := fs.Int("role", 0, "`role` in the room, e.g. 1 teacher, 2 student (with --room)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	hasUser, hasRoom, hasRole := isSet(fs, "user"), isSet(fs, "room"), isSet(fs, "role")
	switch {
	case *app && (hasUser || hasRoom || hasRole):
		return usagef("--app takes none of --user, --room, --role")
	case !*app && !hasUser:
		return usagef("give --app, --user, or --room with --user and --role")
	case hasRoom != hasRole:
		return usagef("--room and --role go together (with --user)")
	case hasUser && *user == "":
		return usagef("--user is empty")
	case hasRoom && *room == "":
		return usagef("--room is empty")
	case hasRole && (*role < -32768 || *role > 32767):
		return usagef("--role %d is outside -32768..32767", *role)
	}
	for _, v := range [...]struct{ what, s string }{{"--user", *user}, {"--room", *room}} {
		if err := accesstoken.ValidateAccount(v.what, v.s); err != nil {
			return err
		}
	}
	b, err := bf.builder(env)
	if err != nil {
		return err
	}
	switch {
	case *app:
		tok, err := b.EducationApp(bf.expire.secs)
		return emit(env, tok, err)
	case hasRoom:
		tok, err := b.EducationRoomUser(*room, *user, int16(*role), bf.expire.secs)
		return emit(env, tok, err)
	}
	tok, err := b.EducationUser(*user, bf.expire.secs)
	return emit(env, tok, err)
}

func tokenFPA(env *tokenEnv, args []string) error {
	fs := newFlagSet(env, "fpa", "fpa --expire S\n\nBuild an FPA (Flexible Private Access) login token.")
	bf := addBuilderFlags(fs)
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	b, err := bf.builder(env)
	if err != nil {
		return err
	}
	tok, err := b.FPA(bf.expire.secs)
	return emit(env, tok, err)
}
