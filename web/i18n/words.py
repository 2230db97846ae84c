"""Messages that reach `_()` / `t()` as values, not literals: states, channels,
statuses, kinds and the server's error texts shown on pages. Listed here so that the
catalogue extraction (pybabel, see web/i18n/__init__.py) finds them; nothing imports
this module at run time."""


def _(message: str) -> str:
    return message


WORDS = (
    # agent states (queues.model.AGENT_STATES) and roles
    _("available"), _("busy"), _("wrap_up"), _("not_ready"), _("logged_out"),
    _("agent"), _("supervisor"), _("admin"),
    # channels, identity kinds
    _("voice"), _("whatsapp"), _("webchat"), _("email"), _("sms"), _("internal"),
    _("phone"), _("sip"), _("webchat_visitor"),
    # conversation and case states, directions, timeline kinds
    _("waiting"), _("assigned"), _("ended"), _("open"), _("closed"),
    _("inbound"), _("outbound"), _("message"), _("call"), _("ivr_step"), _("ivr_end"),
    _("note"), _("wrap_up_code"),
    # delivery states
    _("pending"), _("accepted"), _("sent"), _("delivered"), _("read"), _("failed"),
    # report groupings and intervals
    _("queue"), _("channel"), _("15min"), _("30min"), _("hour"), _("day"),
    # case page fact labels (web/desktop/pages.py)
    _("Digits"), _("Path"), _("Outcome"), _("Talk time (s)"), _("Duration (s)"),
    _("Author"), _("Delivery"), _("Cause"), _("Error"),
    # server messages shown on pages (web/desktop/pages.py, auth.py)
    _("No such case."), _("This case is not one of your tasks."),
    _("The form expired or was not sent by this site; try again."),
    _("Too many failed log-ins; wait a few minutes and try again."),
    _("Wrong user name or password."),
    _("Token created: copy it now, it is not shown again."),
    _("Reload is not wired in this process."), _("Config reloaded."),
    _("A token needs a label."), _("Token revoked."), _("The webhook URL must be http(s)."),
    # the not-ready reason the web sets (acd.disconnected_reason)
    _("disconnected"),
    # call-control states (pbx_bridge.control) and supervisor monitoring modes
    _("talking"), _("held"), _("consulting"), _("conference"), _("transferring"),
    _("listen"), _("whisper"), _("barge"),
    # the demo simulator's caller and desk phone (web/demo/sip_caller.py, desk_phone.py)
    _("idle"), _("calling"), _("ringing"), _("answered"), _("connected"),
    _("unregistered"), _("answer"), _("hangup"),
)
