
/*
 * Per-user rate limits on sends and typing: a leaky bucket per user and
 * kind, as limit_req keeps one, in the user's presence entry of the zone
 * so that every worker draws from the same bucket (without a zone, per
 * connection).
 */


#include <ngx_http_chat.h>
#include <ngx_http_chat_zone.h>


static ngx_msec_t ngx_http_chat_rate_take(ngx_http_chat_rate_t *rate,
    ngx_msec_t *last, ngx_uint_t *excess, ngx_uint_t cost, ngx_uint_t peek);


/*
 * chat_send_rate 10r/s [burst=20]; chat_typing_rate 2r/s [burst=5];
 * chat_search_rate 1r/s [burst=20] | off
 */

char *
ngx_http_chat_rate_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                *p;
    size_t                 len;
    ngx_int_t              rate, scale, burst;
    ngx_str_t             *value;
    ngx_uint_t             i;
    ngx_http_chat_rate_t  *r;

    r = (ngx_http_chat_rate_t *) ((char *) conf + cmd->offset);

    if (r->rate != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        /* no limit; a burst alone tells it from "not set" */
        r->rate = 0;
        r->burst = 1;
        return NGX_CONF_OK;
    }

    rate = 1;
    scale = 1;
    burst = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (i == 1) {
            len = value[i].len;
            p = value[i].data + len - 3;

            if (len > 3 && ngx_strncmp(p, "r/s", 3) == 0) {
                scale = 1;
                len -= 3;

            } else if (len > 3 && ngx_strncmp(p, "r/m", 3) == 0) {
                scale = 60;
                len -= 3;

            } else {
                goto invalid;
            }

            rate = ngx_atoi(value[i].data, len);
            if (rate <= 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            burst = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (burst <= 0) {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    r->rate = rate * 1000 / scale;
    /* cmd->post: without burst=, a unit's worth at once (chat_upload_rate) */
    r->burst = (burst ? burst : (cmd->post ? rate : 1)) * 1000;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\": expected RATEr/s or RATEr/m "
                       "and burst=N, or off", &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * chat_upload_quota 1g | off: bytes per user per day, a bucket that holds
 * a day's quota and drains in a day.
 */

char *
ngx_http_chat_rate_quota_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    off_t                  quota;
    ngx_str_t             *value;
    ngx_http_chat_rate_t  *r;

    r = (ngx_http_chat_rate_t *) ((char *) conf + cmd->offset);

    if (r->rate != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        r->rate = 0;
        r->burst = 1;
        return NGX_CONF_OK;
    }

    quota = ngx_parse_offset(&value[1]);

    /* in thousandths of a byte: at most a petabyte */
    if (quota <= 0 || quota > (off_t) 1 << 50) {
        return "is invalid: expected a size (\"10g\") or off";
    }

    r->rate = (ngx_uint_t) quota * 1000 / 86400;
    r->burst = (ngx_uint_t) quota * 1000;

    if (r->rate == 0) {
        r->rate = 1;
    }

    return NGX_CONF_OK;
}


/* 0: allowed; otherwise how long to wait, in milliseconds */

ngx_msec_t
ngx_http_chat_rate_check(ngx_http_chat_conn_t *wc,
    ngx_http_chat_bucket_t *buckets, ngx_uint_t kind)
{
    ngx_http_chat_bucket_t  *b;

    if (wc->conf->rates[kind].rate == 0) {
        return 0;
    }

    if (ngx_http_chat_zone_sh == NULL || !wc->present) {
        /* buckets: NGX_HTTP_CHAT_WS_RATES of them, a session's */
        b = &buckets[kind];
        return ngx_http_chat_rate_take(&wc->conf->rates[kind], &b->last,
                                       &b->excess, 1000, 0);
    }

    return ngx_http_chat_rate_check_user(wc->conf, &wc->id.id, kind);
}


/*
 * The user's bucket in the zone, which lives with the user's presence
 * entry; a user without a WebSocket anywhere (REST only) gets an offline
 * entry for it.  Only when the zone is full is such a user not limited,
 * for sends, typing and searches; an upload is refused then.
 */

ngx_msec_t
ngx_http_chat_rate_check_user(ngx_http_chat_loc_conf_t *conf, ngx_str_t *id,
    ngx_uint_t kind)
{
    return ngx_http_chat_rate_spend(conf, id, kind, 1, 0);
}


/*
 * The same for a cost of n (requests, or bytes for the upload quota);
 * peek: only whether it would pass, nothing taken.
 */

ngx_msec_t
ngx_http_chat_rate_spend(ngx_http_chat_loc_conf_t *conf, ngx_str_t *id,
    ngx_uint_t kind, ngx_uint_t n, ngx_uint_t peek)
{
    ngx_msec_t                 wait;
    ngx_http_chat_rate_t      *rate;
    ngx_http_chat_zone_t      *zone;
    ngx_http_chat_bucket_t    *b;
    ngx_http_chat_presence_t  *p;

    rate = &conf->rates[kind];
    zone = ngx_http_chat_zone_sh;

    if (rate->rate == 0 || zone == NULL) {
        return 0;
    }

    wait = 0;

    ngx_http_chat_zone_lock();

    p = ngx_http_chat_presence_entry_locked(id->data, id->len);

    if (p != NULL) {
        b = &p->buckets[kind];
        wait = ngx_http_chat_rate_take(rate, &b->last, &b->excess, n * 1000,
                                       peek);

        if (wait == 0 && !peek
            && (kind == NGX_HTTP_CHAT_RATE_UPLOAD
                || kind == NGX_HTTP_CHAT_RATE_UPLOAD_BYTES))
        {
            /* not forgotten before the bucket is empty (R16-7) */
            ngx_http_chat_presence_hold_locked(p,
                                          (time_t) (b->excess / rate->rate));
        }

    } else if (kind == NGX_HTTP_CHAT_RATE_UPLOAD
               || kind == NGX_HTTP_CHAT_RATE_UPLOAD_BYTES)
    {
        /* no entry for the user's buckets: an upload waits, it does not
         * go unlimited (sends and typing do) */
        wait = 1000;
    }

    ngx_http_chat_zone_unlock();

    return wait;
}


static ngx_msec_t
ngx_http_chat_rate_take(ngx_http_chat_rate_t *rate, ngx_msec_t *last,
    ngx_uint_t *excess, ngx_uint_t cost, ngx_uint_t peek)
{
    ngx_msec_t      now;
    ngx_msec_int_t  left, elapsed;

    now = ngx_current_msec;

    /*
     * Each worker has its own clock reading: another worker's "last" may
     * be a little ahead of this one's "now".
     */

    elapsed = *last ? (ngx_msec_int_t) (now - *last) : 60000;

    if (elapsed < 0) {
        elapsed = 0;
    }

    /* a day's quota in bytes drains in a day: no bucket holds more */
    if (elapsed > 2 * 86400000) {
        elapsed = 2 * 86400000;
    }

    /* what drained since the last request, then this request's share */

    left = (ngx_msec_int_t) *excess
           - (ngx_msec_int_t) (rate->rate * (ngx_msec_t) elapsed / 1000);

    if (left < 0) {
        left = 0;
    }

    left += cost;

    if ((ngx_uint_t) left > rate->burst) {
        /* refused requests do not fill the bucket */
        return (ngx_msec_t) ((left - rate->burst) * 1000 / rate->rate) + 1;
    }

    if (peek) {
        return 0;
    }

    *excess = (ngx_uint_t) left;

    if (elapsed > 0 || *last == 0) {
        *last = now;
    }

    return 0;
}
