# Defaults; the sage-image builder sets the provenance, source paths and per-site data.
export DIB_CC_USER=${DIB_CC_USER:-cc}
export DIB_CC_UID=${DIB_CC_UID:-1000}
export DIB_CC_GROUPS=${DIB_CC_GROUPS:-adm,systemd-journal}
# Chameleon requires autologin of cc on the serial consoles; sage-image --no-serial-autologin sets 0.
export DIB_CC_SERIAL_AUTOLOGIN=${DIB_CC_SERIAL_AUTOLOGIN:-1}
export DIB_CC_ADMIN_USER=${DIB_CC_ADMIN_USER:-}
export DIB_CC_ADMIN_UID=${DIB_CC_ADMIN_UID:-1010}
export DIB_CLOUD_INIT_DATASOURCES=${DIB_CLOUD_INIT_DATASOURCES:-"ConfigDrive, OpenStack"}
# chrony: the target sites' NTP servers (space-separated) and whether to add the distribution's pool.
export DIB_CC_NTP_SERVERS=${DIB_CC_NTP_SERVERS:-}
export DIB_CC_NTP_POOL=${DIB_CC_NTP_POOL:-1}
# Host firewall per site kind, decided at boot: "KIND:VIRT:on|off ..." (VIRT none = bare metal).
export DIB_CC_FIREWALL=${DIB_CC_FIREWALL:-"baremetal:none:on kvm:vm:off"}
