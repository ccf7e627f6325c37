// Every text the console shows, in English and Simplified Chinese, and the formats of dates,
// times and ages in the station's time zone. Modules never hold user-visible text: they ask
// t("key", {params}). API values (alert types, severities, statuses, device kinds) stay in
// English on the wire and are translated here. The language is the one saved with the switch
// in the header (localStorage), else the browser's first preferred one (zh* → zh-CN).

export const LANGUAGES = ["en", "zh-CN"];
const LANG_STORAGE = "homecare.console.lang";

// A value is a string with {placeholders}, or {one, other} plural forms chosen by {n}.
export const CATALOGUES = {
  en: {
    "app.name": "Homecare",
    "app.title_count": "({n}) Homecare",
    "skip": "Skip to content",
    "lang.label": "Language",
    "lang.en": "English",
    "lang.zh-CN": "中文",
    "login.title": "Homecare dispatch",
    "login.hint": "Sign in with your API key. The console's tabs in this browser share it until you sign out or close the browser.",
    "login.key": "API key",
    "login.submit": "Sign in",
    "login.empty": "Enter your API key.",
    "login.refused": "The API key was refused.",
    "login.unreachable": "Cannot reach the gateway ({error}).",
    "login.expired": "Your API key is no longer accepted. Sign in again.",
    "login.signed_out_elsewhere": "You were signed out in another tab.",
    "api.forbidden": "This key may not do that.",
    "nav.main": "Main",
    "nav.queue": "Queue",
    "nav.beds": "Beds",
    "nav.open_count": { one: "{n} open alert", other: "{n} open alerts" },
    "logout": "Sign out",
    "conn.live": "Live",
    "conn.connecting": "Connecting…",
    "conn.reconnecting": "Reconnecting…",
    "conn.reconnecting_in": "Reconnecting in {s} s",
    "conn.offline": "Offline",
    "conn.live_title": "Receiving alert changes as they happen",
    "conn.stale_title": "Not receiving live changes; the queue may be out of date",
    "conn.lost": "Connection to the gateway lost at {time}. Retrying — new alerts appear once it is back.",
    "sound.on": "Sound on",
    "sound.off": "Sound off",
    "sound.muted_title": "Alarm sound is muted: click to turn it on",
    "sound.mute_title": "Mute the alarm sound",
    "sound.blocked": "The browser holds back sound until you interact with the page.",
    "sound.enable": "Enable alarm sound",
    "banner.calm": "No open critical alerts",
    "banner.one": "CRITICAL: {title} ({site})",
    "banner.many": "{n} CRITICAL alerts need acknowledgement — oldest: {title}",
    "banner.show": "Show",
    "flash.acknowledged": "Acknowledged: {title}",
    "flash.resolved": "Resolved: {title}",
    "flash.new": "New {severity} alert: {type} — {bed}",
    "flash.repeated": "Called again: {type} — {bed} needs acknowledgement",
    "error.forbidden_acknowledge": "Your key may not acknowledge alerts (viewer role).",
    "error.forbidden_resolve": "Your key may not resolve alerts (viewer role).",
    "error.conflict": "Already handled by someone else: {error}",
    "error.acknowledge": "Could not acknowledge the alert: {error}. Try again.",
    "error.resolve": "Could not resolve the alert: {error}. Try again.",
    "resolve.title": "Resolve alert",
    "resolve.note": "What happened and what was done (required)",
    "resolve.cancel": "Cancel",
    "resolve.submit": "Resolve",
    "resolve.required": "A note is required: say what happened and what was done.",
    "resolve.failed": "Could not resolve: {error}",
    "alert.title": "{type} — {bed}",
    "alert.what": "{title} · {site}",
    "action.acknowledge": "Acknowledge",
    "action.resolve": "Resolve…",
    "loading": "Loading…",
    "queue.title": "Queue",
    "queue.open": "Needs acknowledgement",
    "queue.acknowledged": "Acknowledged, not resolved",
    "queue.no_open": "No open alerts.",
    "queue.none_in_progress": "Nothing in progress.",
    "queue.card_label": "{severity} {type}, {site} {bed}, {status}",
    "queue.occurrences": "{n}×",
    "queue.called_again": { one: "called again", other: "called again {n}×" },
    "queue.escalated": "escalated {n}×",
    "queue.cleared": "condition cleared",
    "queue.cancelled": "cancelled by the person",
    "queue.ack_by": "ack by {who} {time}",
    "queue.opened": "opened {ago} ({time})",
    "detail.title": "Alert",
    "detail.back": "Back to the queue",
    "detail.to_queue": "← Queue",
    "detail.facts": "Alert",
    "detail.bed": "Bed",
    "detail.opened": "Opened",
    "detail.updated": "Last update",
    "detail.occurrences": "Occurrences",
    "detail.called_again": "Called again",
    "detail.times": "{n}×",
    "detail.escalation": "Escalation level",
    "detail.next_escalation": "Next escalation",
    "detail.cleared": "Condition cleared",
    "detail.acknowledged": "Acknowledged",
    "detail.resolved": "Resolved",
    "detail.who_when": "{who}, {time}",
    "detail.time_ago": "{time} ({ago})",
    "detail.note": "Note",
    "detail.incident": "Incident",
    "detail.alert_id": "Alert id",
    "detail.evidence": "Evidence",
    "detail.no_evidence": "No evidence recorded.",
    "detail.history": "History",
    "detail.by": " by {actor}",
    "detail.no_history": "No history yet.",
    "detail.not_found": "No such alert.",
    "detail.load_failed": "Could not load the alert: {error}",
    "beds.title": "Beds",
    "beds.title_count": "Beds ({n})",
    "beds.load_failed": "Could not load beds: {error}",
    "beds.none": "No beds have been heard from yet.",
    "beds.open_alerts": { one: "{n} open alert", other: "{n} open alerts" },
    "beds.no_open_alerts": "no open alerts",
    "beds.order": "Beds with open alerts first, the most severe open alert first; then by bed.",
    "beds.severity_count": { one: "{n} {severity} alert", other: "{n} {severity} alerts" },
    "beds.seen": " · seen {ago}",
    "beds.away": " · away since {time}",
    "beds.devices_offline": "{offline} of {total} devices offline",
    "beds.devices_online": { one: "{n} device online", other: "{n} devices online" },
    "bed.back": "← Beds",
    "bed.not_found": "This bed has not been heard from.",
    "bed.load_failed": "Could not load the bed: {error}",
    "bed.person": "Person {person} · ",
    "bed.last_heard": "last heard {ago} ({time})",
    "bed.never_heard": "not heard from yet",
    "bed.away": " · nobody home since {time} ({ago})",
    "bed.devices": "Devices",
    "bed.col_device": "Device",
    "bed.col_kind": "Kind",
    "bed.col_state": "State",
    "bed.col_battery": "Battery",
    "bed.col_clock": "Clock",
    "bed.col_seen": "Last seen",
    "bed.battery": "{n} %",
    "bed.never": "never",
    "bed.no_devices": "No devices known.",
    "bed.charts": "Last 24 hours",
    "bed.alerts": "Recent alerts",
    "bed.no_alerts": "No alerts.",
    "bed.visits": "Service visits",
    "bed.visits_unavailable": "Service log unavailable.",
    "bed.visit": " · caregiver {caregiver} · visit {visit}",
    "bed.services": "services: {list}",
    "bed.method": "by {method}",
    "bed.no_visits": "No visits recorded.",
    "clock.ok": "ok",
    "clock.wrong": "wrong ({amount})",
    "clock.amount": "{sign}{n} {unit}",
    "unit.y": "y",
    "unit.d": "d",
    "unit.h": "h",
    "unit.min": "min",
    "unit.s": "s",
    "chart.heart_rate": "Heart rate",
    "chart.breathing_rate": "Breathing rate",
    "chart.in_bed": "In bed",
    "chart.motion": "Motion",
    "chart.level_db": "Sound level",
    "chart.per_min": "/min",
    "chart.moves": "moves",
    "chart.db": "dB",
    "chart.value": "{value} {unit}",
    "chart.no_data": "no data in the last 24 h",
    "chart.summary": { one: "{title}: {n} value, latest {shown}", other: "{title}: {n} values, latest {shown}" },
    "chart.summary_empty": "{title}: no data in the last 24 hours",
    "chart.explore": "{title} chart: point at it, or use the arrow keys, Home and End, to read the values",
    "chart.point": "{time}: {value}",
    "value.yes": "yes",
    "value.no": "no",
    "age.now": "just now",
    "age.min": "{m} min",
    "age.hours": "{h} h {m} min",
    "age.days": "{d} d",
    "age.ago": "{age} ago",
    "severity.critical": "critical",
    "severity.high": "high",
    "severity.medium": "medium",
    "severity.low": "low",
    "status.open": "open",
    "status.acknowledged": "acknowledged",
    "status.resolved": "resolved",
    "state.online": "online",
    "state.offline": "offline",
    "state.unknown": "unknown",
    "kind.button": "Emergency button",
    "kind.fall": "Fall sensor",
    "kind.infrared": "Infrared sensor",
    "kind.audio": "Sound sensor",
    "kind.badge": "Caregiver badge",
    "type.emergency_button": "Emergency button",
    "type.fall": "Fall",
    "type.inactivity": "No activity",
    "type.night_bed_exit": "Night bed exit",
    "type.abnormal_sound": "Abnormal sound",
    "type.vital_signs": "Vital signs",
    "type.device_offline": "Device offline",
    "type.low_battery": "Low battery",
    "type.sensor_fault": "Sensor fault",
    "type.service_anomaly": "Service anomaly",
    "history.opened": "Opened",
    "history.updated": "Updated",
    "history.cleared": "Cleared",
    "history.escalated": "Escalated",
    "history.repeated": "Repeated",
    "history.acknowledged": "Acknowledged",
    "history.resolved": "Resolved",
    "visit.check_in": "Check in",
    "visit.check_out": "Check out",
    "evidence.confidence": "Confidence",
    "evidence.posture": "Posture",
    "evidence.device": "Device",
    "evidence.kind": "Kind",
    "evidence.battery_pct": "Battery (%)",
    "evidence.cancelled_at": "Cancelled at",
    "evidence.event": "Event",
    "evidence.level_db": "Sound level (dB)",
    "evidence.still_minutes": "Still for (min)",
    "evidence.out_minutes": "Out of bed for (min)",
    "evidence.usual_minutes": "Usual (min)",
    "evidence.reason": "Reason",
    "evidence.pressed_at": "Pressed at",
    "evidence.cancel_outside_window": "Cancelled too late",
    "evidence.fall_at": "Fall at",
    "evidence.recovered_at": "Up again at",
    "evidence.no_motion_since": "No movement since",
    "evidence.ts": "Device time",
    "evidence.seq": "Message number",
    "actor.system": "the gateway",
    "actor.person": "the person at home",
    "history.assigned": "Assigned",
    "history.assigned_to": "Assigned to {who}",
    "history.unassigned": "Unassigned",
    "history.commented": "Comment",
    "history.checklist_checked": "Checked off",
    "history.checklist_unchecked": "Unchecked",
    "history.contact_called": "Call",
    "history.call": "{contact}: {result}",
    "history.outcome": "Outcome: {outcome}",
    "outcome.false_alarm": "False alarm",
    "outcome.handled_by_phone": "Handled by phone",
    "outcome.caregiver_sent": "Caregiver sent",
    "outcome.family_came": "Family came",
    "outcome.ambulance_called": "Ambulance called",
    "outcome.other": "Other",
    "checklist.call_resident": "Call the resident",
    "checklist.call_first_contact": "Call the first contact",
    "checklist.send_caregiver": "Send a caregiver",
    "checklist.consider_ambulance": "Consider an ambulance",
    "checklist.ask_duty_nurse": "Ask the duty nurse",
    "checklist.call_caregiver": "Call the caregiver",
    "checklist.check_visit_record": "Check the visit record",
    "checklist.arrange_device_check": "Arrange a device check",
    "checklist.arrange_battery_change": "Arrange a battery change",
    "checklist.title": "Response checklist",
    "checklist.none": "No checklist for this type of alert.",
    "resolve.outcome": "How did it end? (required)",
    "resolve.outcome_choose": "Choose…",
    "resolve.outcome_required": "Choose how it ended.",
    "action.assign_me": "Assign to me",
    "action.unassign": "Unassign",
    "detail.assigned": "Assigned to",
    "detail.outcome": "Outcome",
    "profile.title": "Resident",
    "profile.none": "No resident profile for this bed.",
    "profile.load_failed": "Could not load the resident profile: {error}",
    "profile.name": "Name",
    "profile.address": "Address",
    "profile.phone": "Phone",
    "profile.medical": "Medical notes",
    "profile.access": "Getting in",
    "contacts.title": "Whom to call",
    "contacts.self": "resident",
    "contacts.contact_n": "Contact {n}",
    "contacts.resident": "The resident",
    "contacts.who": "{n}. {name}",
    "contacts.relation": "({relation})",
    "contacts.answered": "Answered",
    "contacts.no_answer": "No answer",
    "contacts.record_label": "{name}: {result}",
    "contacts.log": "{time} {result} · {who}",
    "contacts.not_called": "Not called yet",
    "contacts.none": "No phone numbers in the profile.",
    "comments.title": "Comments",
    "comments.label": "Add a comment",
    "comments.submit": "Add comment",
    "comments.none": "No comments yet.",
    "comments.empty": "Write the comment first.",
    "comments.by": "{time} · {who}",
    "queue.assigned": "assigned to {who}",
    "error.handle": "Could not record it: {error}",
    "error.forbidden_handle": "Your key may not handle alerts (viewer role).",
  },
  "zh-CN": {
    "app.name": "居家照护",
    "app.title_count": "（{n}）居家照护",
    "skip": "跳到主要内容",
    "lang.label": "语言",
    "lang.en": "English",
    "lang.zh-CN": "中文",
    "login.title": "居家照护调度台",
    "login.hint": "请使用 API 密钥登录。在您退出登录或关闭浏览器之前，本浏览器中调度台的各个标签页共用此密钥。",
    "login.key": "API 密钥",
    "login.submit": "登录",
    "login.empty": "请输入 API 密钥。",
    "login.refused": "API 密钥无效，已被拒绝。",
    "login.unreachable": "无法连接网关（{error}）。",
    "login.expired": "您的 API 密钥已失效，请重新登录。",
    "login.signed_out_elsewhere": "您已在另一个标签页退出登录。",
    "api.forbidden": "此密钥无权执行该操作。",
    "nav.main": "主导航",
    "nav.queue": "告警队列",
    "nav.beds": "床位",
    "nav.open_count": "{n} 条未处理告警",
    "logout": "退出登录",
    "conn.live": "实时在线",
    "conn.connecting": "正在连接…",
    "conn.reconnecting": "正在重新连接…",
    "conn.reconnecting_in": "{s} 秒后重新连接",
    "conn.offline": "离线",
    "conn.live_title": "正在实时接收告警变化",
    "conn.stale_title": "未在接收实时变化，队列可能不是最新的",
    "conn.lost": "与网关的连接于 {time} 中断，正在重试；连接恢复后新告警会立即显示。",
    "sound.on": "声音已开",
    "sound.off": "已静音",
    "sound.muted_title": "告警声音已静音，点击开启",
    "sound.mute_title": "关闭告警声音",
    "sound.blocked": "在您操作页面之前，浏览器不会播放声音。",
    "sound.enable": "开启告警声音",
    "banner.calm": "没有未处理的紧急告警",
    "banner.one": "紧急：{title}（{site}）",
    "banner.many": "{n} 条紧急告警待确认，最早的是：{title}",
    "banner.show": "查看",
    "flash.acknowledged": "已确认：{title}",
    "flash.resolved": "已处理完毕：{title}",
    "flash.new": "新告警（{severity}）：{type}——{bed}",
    "flash.repeated": "再次呼叫：{type}——{bed}，请确认",
    "error.forbidden_acknowledge": "您的密钥无权确认告警（只读角色）。",
    "error.forbidden_resolve": "您的密钥无权处理告警（只读角色）。",
    "error.conflict": "已由其他人处理：{error}",
    "error.acknowledge": "确认告警失败：{error}。请重试。",
    "error.resolve": "处理告警失败：{error}。请重试。",
    "resolve.title": "处理完毕",
    "resolve.note": "发生了什么、采取了哪些措施（必填）",
    "resolve.cancel": "取消",
    "resolve.submit": "处理完毕",
    "resolve.required": "必须填写处理说明：发生了什么、采取了哪些措施。",
    "resolve.failed": "无法完成处理：{error}",
    "alert.title": "{type}——{bed}",
    "alert.what": "{title} · {site}",
    "action.acknowledge": "确认",
    "action.resolve": "处理完毕…",
    "loading": "加载中…",
    "queue.title": "告警队列",
    "queue.open": "待确认",
    "queue.acknowledged": "已确认，处理中",
    "queue.no_open": "没有待确认的告警。",
    "queue.none_in_progress": "没有处理中的告警。",
    "queue.card_label": "{severity}，{type}，{site} {bed}，{status}",
    "queue.occurrences": "{n} 次",
    "queue.called_again": "再次呼叫 {n} 次",
    "queue.escalated": "已升级 {n} 次",
    "queue.cleared": "情况已解除",
    "queue.cancelled": "本人已取消呼叫",
    "queue.ack_by": "{who} 于 {time} 确认",
    "queue.opened": "{ago}发生（{time}）",
    "detail.title": "告警",
    "detail.back": "返回告警队列",
    "detail.to_queue": "← 告警队列",
    "detail.facts": "告警信息",
    "detail.bed": "床位",
    "detail.opened": "发生时间",
    "detail.updated": "最近更新",
    "detail.occurrences": "发生次数",
    "detail.called_again": "再次呼叫",
    "detail.times": "{n} 次",
    "detail.escalation": "升级级别",
    "detail.next_escalation": "下次升级",
    "detail.cleared": "情况解除",
    "detail.acknowledged": "确认",
    "detail.resolved": "处理完毕",
    "detail.who_when": "{who}，{time}",
    "detail.time_ago": "{time}（{ago}）",
    "detail.note": "处理说明",
    "detail.incident": "事件编号",
    "detail.alert_id": "告警编号",
    "detail.evidence": "检测依据",
    "detail.no_evidence": "没有记录检测依据。",
    "detail.history": "处理记录",
    "detail.by": "，操作人：{actor}",
    "detail.no_history": "暂无处理记录。",
    "detail.not_found": "没有这条告警。",
    "detail.load_failed": "无法加载告警：{error}",
    "beds.title": "床位",
    "beds.title_count": "床位（{n}）",
    "beds.load_failed": "无法加载床位：{error}",
    "beds.none": "尚未收到任何床位的数据。",
    "beds.open_alerts": "{n} 条未处理告警",
    "beds.no_open_alerts": "无未处理告警",
    "beds.order": "有未处理告警的床位排在前面，最严重的未处理告警优先；其余按床位编号排列。",
    "beds.severity_count": "{n} 条{severity}告警",
    "beds.seen": " · {ago}上报",
    "beds.away": " · {time} 起无人在家",
    "beds.devices_offline": "{total} 台设备中 {offline} 台离线",
    "beds.devices_online": "{n} 台设备在线",
    "bed.back": "← 床位",
    "bed.not_found": "尚未收到此床位的数据。",
    "bed.load_failed": "无法加载床位：{error}",
    "bed.person": "住户 {person} · ",
    "bed.last_heard": "最近上报：{ago}（{time}）",
    "bed.never_heard": "尚未收到数据",
    "bed.away": " · {time} 起无人在家（{ago}）",
    "bed.devices": "设备",
    "bed.col_device": "设备",
    "bed.col_kind": "类型",
    "bed.col_state": "状态",
    "bed.col_battery": "电量",
    "bed.col_clock": "时钟",
    "bed.col_seen": "最近上报",
    "bed.battery": "{n}%",
    "bed.never": "从未上报",
    "bed.no_devices": "没有已知设备。",
    "bed.charts": "最近 24 小时",
    "bed.alerts": "最近告警",
    "bed.no_alerts": "无告警。",
    "bed.visits": "上门服务",
    "bed.visits_unavailable": "服务记录暂不可用。",
    "bed.visit": " · 护理员 {caregiver} · 服务单 {visit}",
    "bed.services": "服务项目：{list}",
    "bed.method": "签到方式：{method}",
    "bed.no_visits": "没有上门服务记录。",
    "clock.ok": "正常",
    "clock.wrong": "错误（{amount}）",
    "clock.amount": "{sign}{n} {unit}",
    "unit.y": "年",
    "unit.d": "天",
    "unit.h": "小时",
    "unit.min": "分钟",
    "unit.s": "秒",
    "chart.heart_rate": "心率",
    "chart.breathing_rate": "呼吸频率",
    "chart.in_bed": "在床",
    "chart.motion": "体动",
    "chart.level_db": "声音强度",
    "chart.per_min": "次/分",
    "chart.moves": "次",
    "chart.db": "分贝",
    "chart.value": "{value} {unit}",
    "chart.no_data": "最近 24 小时无数据",
    "chart.summary": "{title}：{n} 个数据，最新 {shown}",
    "chart.summary_empty": "{title}：最近 24 小时无数据",
    "chart.explore": "{title}图表：将指针移到图上，或使用方向键、Home 键和 End 键查看数值",
    "chart.point": "{time}：{value}",
    "value.yes": "是",
    "value.no": "否",
    "age.now": "刚刚",
    "age.min": "{m} 分钟",
    "age.hours": "{h} 小时 {m} 分钟",
    "age.days": "{d} 天",
    "age.ago": "{age}前",
    "severity.critical": "紧急",
    "severity.high": "重要",
    "severity.medium": "一般",
    "severity.low": "提示",
    "status.open": "未确认",
    "status.acknowledged": "已确认",
    "status.resolved": "已处理",
    "state.online": "在线",
    "state.offline": "离线",
    "state.unknown": "未知",
    "kind.button": "紧急呼叫按钮",
    "kind.fall": "跌倒检测器",
    "kind.infrared": "红外传感器",
    "kind.audio": "声音传感器",
    "kind.badge": "护理员工牌",
    "type.emergency_button": "紧急呼叫",
    "type.fall": "跌倒",
    "type.inactivity": "长时间无活动",
    "type.night_bed_exit": "夜间离床",
    "type.abnormal_sound": "异常声音",
    "type.vital_signs": "生命体征异常",
    "type.device_offline": "设备离线",
    "type.low_battery": "电量低",
    "type.sensor_fault": "传感器故障",
    "type.service_anomaly": "服务异常",
    "history.opened": "告警发生",
    "history.updated": "更新",
    "history.cleared": "情况解除",
    "history.escalated": "升级",
    "history.repeated": "再次呼叫",
    "history.acknowledged": "已确认",
    "history.resolved": "处理完毕",
    "visit.check_in": "签到",
    "visit.check_out": "签退",
    "evidence.confidence": "置信度",
    "evidence.posture": "姿态",
    "evidence.device": "设备",
    "evidence.kind": "设备类型",
    "evidence.battery_pct": "电量（%）",
    "evidence.cancelled_at": "取消时间",
    "evidence.event": "事件",
    "evidence.level_db": "声音强度（分贝）",
    "evidence.still_minutes": "静止时长（分钟）",
    "evidence.out_minutes": "离床时长（分钟）",
    "evidence.usual_minutes": "平时时长（分钟）",
    "evidence.reason": "原因",
    "evidence.pressed_at": "按下时间",
    "evidence.cancel_outside_window": "超时后取消",
    "evidence.fall_at": "跌倒时间",
    "evidence.recovered_at": "起身时间",
    "evidence.no_motion_since": "静止开始时间",
    "evidence.ts": "设备时间",
    "evidence.seq": "消息序号",
    "actor.system": "系统",
    "actor.person": "老人本人",
    "history.assigned": "已分派",
    "history.assigned_to": "分派给 {who}",
    "history.unassigned": "取消分派",
    "history.commented": "备注",
    "history.checklist_checked": "已完成",
    "history.checklist_unchecked": "撤销完成",
    "history.contact_called": "电话联系",
    "history.call": "{contact}：{result}",
    "history.outcome": "处理结果：{outcome}",
    "outcome.false_alarm": "误报",
    "outcome.handled_by_phone": "电话处理",
    "outcome.caregiver_sent": "已派护理员",
    "outcome.family_came": "家属到场",
    "outcome.ambulance_called": "已呼叫救护车",
    "outcome.other": "其他",
    "checklist.call_resident": "致电老人",
    "checklist.call_first_contact": "致电第一联系人",
    "checklist.send_caregiver": "派护理员上门",
    "checklist.consider_ambulance": "评估是否呼叫救护车",
    "checklist.ask_duty_nurse": "咨询值班护士",
    "checklist.call_caregiver": "致电护理员",
    "checklist.check_visit_record": "核对服务记录",
    "checklist.arrange_device_check": "安排设备检查",
    "checklist.arrange_battery_change": "安排更换电池",
    "checklist.title": "处置步骤",
    "checklist.none": "此类告警没有处置步骤。",
    "resolve.outcome": "处理结果（必选）",
    "resolve.outcome_choose": "请选择…",
    "resolve.outcome_required": "请选择处理结果。",
    "action.assign_me": "由我处理",
    "action.unassign": "取消分派",
    "detail.assigned": "负责人",
    "detail.outcome": "处理结果",
    "profile.title": "老人信息",
    "profile.none": "该床位没有老人信息。",
    "profile.load_failed": "无法加载老人信息：{error}",
    "profile.name": "姓名",
    "profile.address": "地址",
    "profile.phone": "电话",
    "profile.medical": "医疗备注",
    "profile.access": "入户方式",
    "contacts.title": "联系电话",
    "contacts.self": "本人",
    "contacts.contact_n": "联系人 {n}",
    "contacts.resident": "老人本人",
    "contacts.who": "{n}. {name}",
    "contacts.relation": "（{relation}）",
    "contacts.answered": "已接通",
    "contacts.no_answer": "未接通",
    "contacts.record_label": "{name}：{result}",
    "contacts.log": "{time} {result} · {who}",
    "contacts.not_called": "尚未联系",
    "contacts.none": "档案中没有电话号码。",
    "comments.title": "处理备注",
    "comments.label": "添加备注",
    "comments.submit": "添加备注",
    "comments.none": "暂无备注。",
    "comments.empty": "请先填写备注。",
    "comments.by": "{time} · {who}",
    "queue.assigned": "负责人：{who}",
    "error.handle": "无法记录：{error}",
    "error.forbidden_handle": "您的密钥无权处理告警（只读角色）。",
  },
};

/** The language from a saved choice, else the browser's preferred languages. */
export function chooseLanguage(saved, preferred) {
  if (LANGUAGES.includes(saved)) return saved;
  for (const tag of preferred || []) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

function savedLanguage() {
  try { return localStorage.getItem(LANG_STORAGE); } catch { return null; }
}

let lang = chooseLanguage(savedLanguage(), globalThis.navigator?.languages);
let zone; // undefined: the browser's own zone, until the station's is known
let plurals = new Intl.PluralRules(lang);

export const language = () => lang;

/** Switch language (remembered in this browser); the caller re-renders. */
export function setLanguage(next, { save = true } = {}) {
  if (!LANGUAGES.includes(next)) return;
  lang = next;
  plurals = new Intl.PluralRules(lang);
  if (save) {
    try { localStorage.setItem(LANG_STORAGE, next); } catch { /* private mode: not kept */ }
  }
  if (globalThis.document) document.documentElement.lang = lang;
}

/** The station's IANA time zone (from the API); invalid or empty: the browser's zone. */
export function setTimeZone(name) {
  try {
    new Intl.DateTimeFormat("en", { timeZone: name || undefined });
    zone = name || undefined;
  } catch {
    zone = undefined;
  }
}

export const timeZone = () => zone;

/** The text for `key` with {placeholders} filled; plural forms chosen by `params.n`. */
export function t(key, params = {}) {
  let text = CATALOGUES[lang][key] ?? CATALOGUES.en[key];
  if (text === undefined) return key;
  if (typeof text === "object") text = text[plurals.select(params.n ?? 0)] ?? text.other;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/** Like t(), but placeholders may be DOM nodes: an array of strings and nodes. */
export function tNodes(key, params = {}) {
  const marker = "\u0000";
  const nodes = [];
  const text = t(key, Object.fromEntries(Object.keys(params).map((name) => [name, `${marker}${name}${marker}`])));
  text.split(marker).forEach((part, i) => {
    if (i % 2 === 0) { if (part) nodes.push(part); } else nodes.push(params[part]);
  });
  return nodes;
}

/** True when the catalogue names this API value. */
export const hasLabel = (group, value) => `${group}.${value}` in CATALOGUES.en;

/** The catalogue's label for an API value (`type.fall`), else the value made readable. */
export function label(group, value) {
  const key = `${group}.${value}`;
  if (key in CATALOGUES[lang] || key in CATALOGUES.en) return t(key);
  const s = String(value ?? "").replaceAll("_", " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Put the catalogue's texts into the static page: data-i18n (text), data-i18n-attr
 * ("attribute:key;attribute:key"). */
export function translatePage(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
}

// --- dates and times, in the station's zone and the language's format --------------------------

const formats = new Map();

function format(options) {
  const id = `${lang}|${zone}|${JSON.stringify(options)}`;
  let f = formats.get(id);
  if (!f) {
    f = new Intl.DateTimeFormat(lang, { timeZone: zone, ...options });
    formats.set(id, f);
  }
  return f;
}

const DAY = { year: "numeric", month: "2-digit", day: "2-digit" };

/** "14:02:11" today (in the station's zone), else "3 Dec 14:02:11" / "12月3日 14:02:11". */
export function fmtTime(ms, now = Date.now()) {
  if (typeof ms !== "number") return "–";
  const time = format({ hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }).format(ms);
  if (format(DAY).format(ms) === format(DAY).format(now)) return time;
  return `${format({ month: "short", day: "numeric" }).format(ms)} ${time}`;
}

/** "14:02", in the station's zone. */
export function fmtClock(ms) {
  return format({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(ms);
}

/** The hour and minute of `ms` in the station's zone (chart ticks). */
export function zoneHourMinute(ms) {
  const parts = format({ hour: "numeric", minute: "numeric", hourCycle: "h23" }).formatToParts(ms);
  const part = (type) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return [part("hour") % 24, part("minute")];
}

/** "just now", "4 min", "2 h 5 min", "3 d": how long ago `ms` was (never negative). */
export function fmtAge(ms, now = Date.now()) {
  if (typeof ms !== "number") return "–";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 45) return t("age.now");
  const m = Math.round(s / 60);
  if (m < 60) return t("age.min", { m });
  const hours = Math.floor(m / 60);
  if (hours < 48) return t("age.hours", { h: hours, m: m % 60 });
  return t("age.days", { d: Math.floor(hours / 24) });
}

/** "just now" or "4 min ago". */
export function fmtAgo(ms, now = Date.now()) {
  if (typeof ms !== "number") return "–";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 45 ? t("age.now") : t("age.ago", { age: fmtAge(ms, now) });
}
