// Second reference implementation for the accesstoken tests: Agora's
// official agora-token package. Reads one JSON request on stdin and
// writes one JSON answer on stdout:
//
//   request  {"build":[SPEC…], "parse":[{"token":…,"certificate":…}…],
//             "high_level":[{"builder":NAME,"args":[…]}…]}
//   answer   {"built":[TOKEN…], "parsed":[{"ok":bool,"verified":bool,"token":SPEC}…],
//             "high_level":[TOKEN…]}
//
// SPEC is the token CLI's JSON schema (issue_ts and salt fixed by the
// caller, plus "certificate"); parsed tokens are written back in it.
'use strict'

const at = require('agora-token/src/AccessToken2')
const { RtcTokenBuilder, RtmTokenBuilder, ChatTokenBuilder, EducationTokenBuilder } = require('agora-token')

const types = {
    rtc: at.kRtcServiceType, rtm: at.kRtmServiceType, streaming: at.kStreamingServiceType,
    fpa: at.kFpaServiceType, chat: at.kChatServiceType, fcdn: at.kFCdnServiceType,
    apaas: at.kApaasServiceType, rtm2: at.kRtm2ServiceType, convoai: at.kConvoAIServiceType,
    stt: at.kSttServiceType,
}
const typeNames = Object.fromEntries(Object.entries(types).map(([k, v]) => [v, k]))

// Privilege names per service type, as in Agora's builders.
const privilegeNames = {
    rtc: { join_channel: 1, publish_audio_stream: 2, publish_video_stream: 3, publish_data_stream: 4 },
    rtm: { login: 1 }, fpa: { login: 1 }, rtm2: { login: 1 },
    streaming: { publish_mix_stream: 1, publish_raw_stream: 2 },
    chat: { user: 1, app: 2 }, fcdn: { publish: 1, play: 2 },
    apaas: { room_user: 1, user: 2, app: 3 }, convoai: {}, stt: {},
}

function privilegeKey(type, name) {
    const key = privilegeNames[type][name]
    if (key !== undefined) return key
    if (/^[0-9]+$/.test(name)) return Number(name)
    throw new Error(`${type} privilege ${name} has no number`)
}

function privilegeName(type, key) {
    for (const [name, k] of Object.entries(privilegeNames[type])) {
        if (k === Number(key)) return name
    }
    return String(key)
}

function newService(s) {
    switch (s.type) {
    case 'rtc': return new at.ServiceRtc(s.channel || '', s.uid || '')
    case 'rtm': return new at.ServiceRtm(s.user_id || '')
    case 'streaming': return new at.ServiceStreaming(s.channel || '', s.account || '')
    case 'fpa': return new at.ServiceFpa()
    case 'chat': return new at.ServiceChat(s.user_id || '')
    case 'fcdn': return new at.ServiceFCdn(s.channel || '', s.account || '')
    case 'apaas': return new at.ServiceApaas(s.room_uuid || '', s.user_uuid || '', s.role)
    case 'rtm2': {
        const perms = new at.Rtm2Permissions()
        for (const p of s.permissions || []) perms.add(p.resource_type, p.permission_type, p.resources)
        return new at.ServiceRtm2(s.user_id || '', perms)
    }
    case 'convoai': return new at.ServiceConvoAI()
    case 'stt': return new at.ServiceStt()
    }
    throw new Error(`unknown service type ${s.type}`)
}

function build(spec) {
    const token = new at.AccessToken2(spec.app_id, spec.certificate, spec.issue_ts, spec.expire)
    token.salt = spec.salt
    for (const s of spec.services) {
        const svc = newService(s)
        for (const [name, expire] of Object.entries(s.privileges || {})) {
            svc.add_privilege(privilegeKey(s.type, name), expire)
        }
        token.add_service(svc)
    }
    return token.build()
}

function str(v) { return Buffer.isBuffer(v) ? v.toString() : String(v) }

function describe(svc) {
    const type = typeNames[svc.service_type()]
    const out = { type }
    switch (type) {
    case 'rtc': out.channel = str(svc.__channel_name); out.uid = str(svc.__uid); break
    case 'rtm': case 'chat': out.user_id = str(svc.__user_id); break
    case 'streaming': case 'fcdn': out.channel = str(svc.__channel_name); out.account = str(svc.__account); break
    case 'apaas':
        out.room_uuid = str(svc.__room_uuid); out.user_uuid = str(svc.__user_uuid)
        // agora-token's getInt16 reads the role unsigned: -1 comes back as 65535.
        out.role = (svc.__role << 16) >> 16
        break
    case 'rtm2': out.user_id = str(svc.__user_id); break
    }
    out.privileges = {}
    const keys = Object.keys(svc.__privileges).map(Number).sort((a, b) => a - b)
    for (const k of keys) out.privileges[privilegeName(type, k)] = svc.__privileges[k]
    if (type === 'rtm2') {
        out.permissions = []
        const details = svc.__permissions.details
        for (const rt of Object.keys(details).map(Number).sort((a, b) => a - b)) {
            for (const pt of Object.keys(details[rt]).map(Number).sort((a, b) => a - b)) {
                out.permissions.push({ resource_type: rt, permission_type: pt, resources: details[rt][pt].map(str) })
            }
        }
    }
    return out
}

function parse(req) {
    const token = new at.AccessToken2('', '', 0, 0)
    if (!token.from_string(req.token)) return { ok: false, verified: false }
    return {
        ok: true,
        verified: token.verifySignature(req.certificate),
        token: {
            version: '007', app_id: str(token.appId), issue_ts: token.issueTs, expire: token.expire,
            salt: token.salt, services: token.services.map(describe),
        },
    }
}

// High-level builders: random salt and the current time, read back from
// the token by the caller.
const highLevel = {
    rtc_uid: (a) => RtcTokenBuilder.buildTokenWithUid(...a),
    rtc_account: (a) => RtcTokenBuilder.buildTokenWithUserAccount(...a),
    rtc_uid_privileges: (a) => RtcTokenBuilder.buildTokenWithUidAndPrivilege(...a),
    rtc_rtm: (a) => RtcTokenBuilder.buildTokenWithRtm(...a),
    rtm: (a) => RtmTokenBuilder.buildToken(...a),
    chat_user: (a) => ChatTokenBuilder.buildUserToken(...a),
    chat_app: (a) => ChatTokenBuilder.buildAppToken(...a),
    education_user: (a) => EducationTokenBuilder.buildUserToken(...a),
    education_app: (a) => EducationTokenBuilder.buildAppToken(...a),
}

let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (chunk) => { input += chunk })
process.stdin.on('end', () => {
    const req = JSON.parse(input)
    const answer = {
        built: (req.build || []).map(build),
        parsed: (req.parse || []).map(parse),
        high_level: (req.high_level || []).map((h) => {
            const f = highLevel[h.builder]
            if (!f) throw new Error(`unknown builder ${h.builder}`)
            return f(h.args)
        }),
    }
    process.stdout.write(JSON.stringify(answer))
})
